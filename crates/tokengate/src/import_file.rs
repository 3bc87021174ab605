//! Reading keys to import from other systems' exports (`tokengate tokens import`):
//! Kong's key-auth export (`GET /key-auths` JSON pages, one after another or in an
//! array) and CSV (`name,key,scopes,expires_at` or `name,sha256,scopes,expires_at`).
//! Each key becomes one NDJSON line of `POST /v1/accounts/{acc}/tokens/import`,
//! numbered as in the source (CSV: the file's line; Kong: the key's position).

use std::io::Read;

use serde_json::{Value, json};

/// One key read from an export, ready to send; `number` is where it was in the source.
pub struct SourceLine {
    pub number: u64,
    pub json: Result<String, String>,
}

/// The keys of a Kong key-auth export.
pub fn kong(reader: impl Read, scopes: &[String]) -> impl Iterator<Item = SourceLine> {
    let values = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
    let mut number = 0u64;
    let scopes = scopes.to_vec();
    values.flat_map(move |value| {
        let entries: Vec<Result<Value, String>> = match value {
            Ok(Value::Object(page)) if page.contains_key("data") => match page.get("data") {
                Some(Value::Array(data)) => data.iter().cloned().map(Ok).collect(),
                _ => vec![Err("a page's data is not an array".to_string())],
            },
            Ok(Value::Array(items)) => items
                .into_iter()
                .flat_map(|item| match item.get("data") {
                    Some(Value::Array(data)) => data.iter().cloned().map(Ok).collect::<Vec<_>>(),
                    _ => vec![Ok(item)],
                })
                .collect(),
            Ok(entry @ Value::Object(_)) => vec![Ok(entry)],
            Ok(_) => vec![Err("not a Kong key-auth page".to_string())],
            Err(e) => vec![Err(format!("not JSON: {e}"))],
        };
        let scopes = scopes.clone();
        entries
            .into_iter()
            .map(|entry| {
                number += 1;
                SourceLine { number, json: entry.and_then(|e| kong_line(&e, &scopes)) }
            })
            .collect::<Vec<_>>()
    })
}

fn kong_line(entry: &Value, scopes: &[String]) -> Result<String, String> {
    let key = entry.get("key").and_then(Value::as_str).ok_or("a key-auth entry without key")?;
    let id = entry.get("id").and_then(Value::as_str);
    let consumer =
        entry.get("consumer").and_then(|c| c.get("username").or_else(|| c.get("id"))).and_then(Value::as_str);
    let name = match (consumer, id) {
        (Some(c), _) => format!("kong:{c}"),
        (None, Some(id)) => format!("kong:{id}"),
        (None, None) => "kong".to_string(),
    };
    // Kong keys with a ttl expire `ttl` seconds after created_at.
    let expires_at = match (entry.get("created_at").and_then(Value::as_i64), entry.get("ttl").and_then(Value::as_i64)) {
        (Some(created), Some(ttl)) if ttl > 0 => Some(created + ttl),
        _ => None,
    };
    let mut line = serde_json::Map::new();
    line.insert("name".into(), json!(name));
    line.insert("key".into(), json!(key));
    line.insert("external_id".into(), json!(id));
    if let Some(at) = expires_at {
        line.insert("expires_at".into(), json!(at));
    }
    if !scopes.is_empty() {
        line.insert("scopes".into(), json!(scopes));
    }
    Ok(Value::Object(line).to_string())
}

/// The keys of a CSV file with a header naming `name`, `key` or `sha256`, and
/// optionally `scopes` (space-separated) and `expires_at`; a row that names no scopes
/// gets `scopes` (as Kong's keys do), when given.
pub fn csv(reader: impl Read, scopes: &[String]) -> Result<impl Iterator<Item = SourceLine>, String> {
    let default_scopes = scopes.to_vec();
    let mut csv = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(reader);
    let header: Vec<String> = csv.headers().map_err(|e| e.to_string())?.iter().map(str::to_ascii_lowercase).collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (name, key, sha256, scopes_at, expires) =
        (column("name"), column("key"), column("sha256"), column("scopes"), column("expires_at"));
    if name.is_none() || key.is_some() == sha256.is_some() {
        return Err("the CSV header must name `name` and one of `key` or `sha256`".into());
    }
    Ok(csv.into_records().map(move |record| {
        let number = record.as_ref().ok().and_then(|r| r.position()).map_or(0, |p| p.line());
        let json = record.map_err(|e| e.to_string()).map(|r| {
            let field = |i: Option<usize>| i.and_then(|i| r.get(i)).filter(|v| !v.is_empty());
            let mut line = serde_json::Map::new();
            line.insert("name".into(), json!(field(name)));
            if let Some(k) = field(key) {
                line.insert("key".into(), json!(k));
            }
            if let Some(s) = field(sha256) {
                line.insert("sha256".into(), json!(s));
            }
            if let Some(s) = field(scopes_at) {
                line.insert("scopes".into(), json!(s.split_whitespace().collect::<Vec<_>>()));
            } else if !default_scopes.is_empty() {
                line.insert("scopes".into(), json!(default_scopes));
            }
            if let Some(at) = field(expires) {
                let at = match at.parse::<i64>() {
                    Ok(secs) => json!(secs),
                    Err(_) => json!(at),
                };
                line.insert("expires_at".into(), at);
            }
            Value::Object(line).to_string()
        });
        SourceLine { number, json }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kong_pages_in_every_arrangement() {
        let page = r#"{"data":[{"id":"a1","key":"k-one-12345","consumer":{"id":"c1"},"created_at":1700000000,"ttl":3600},
            {"id":"a2","key":"k-two-12345","consumer":{"id":"c2","username":"bob"}}],"next":null}"#;
        let two_pages = format!("{page}\n{page}");
        let lines: Vec<_> = kong(two_pages.as_bytes(), &[]).collect();
        assert_eq!(lines.len(), 4);
        let first: Value = serde_json::from_str(lines[0].json.as_ref().unwrap()).unwrap();
        assert_eq!(
            first,
            json!({"name": "kong:c1", "key": "k-one-12345", "external_id": "a1", "expires_at": 1700003600})
        );
        let second: Value = serde_json::from_str(lines[1].json.as_ref().unwrap()).unwrap();
        assert_eq!(second["name"], "kong:bob");
        assert_eq!(lines[3].number, 4);
        let array = format!("[{page}]");
        assert_eq!(kong(array.as_bytes(), &["messages:send".into()]).count(), 2);
        let bad: Vec<_> = kong(r#"{"data":[{"id":"x"}]}"#.as_bytes(), &[]).collect();
        assert!(bad[0].json.is_err());
    }

    #[test]
    fn csv_with_keys_or_digests() {
        let file = "name,key,scopes,expires_at\na,key-aaaa-1,messages:send instance:read,2030-01-01T00:00:00Z\nb,key-bbbb-2,,\n";
        let lines: Vec<_> = csv(file.as_bytes(), &[]).unwrap().collect();
        assert_eq!(lines.iter().map(|l| l.number).collect::<Vec<_>>(), [2, 3]);
        let a: Value = serde_json::from_str(lines[0].json.as_ref().unwrap()).unwrap();
        assert_eq!(
            a,
            json!({"name": "a", "key": "key-aaaa-1", "scopes": ["messages:send", "instance:read"], "expires_at": "2030-01-01T00:00:00Z"})
        );
        let b: Value = serde_json::from_str(lines[1].json.as_ref().unwrap()).unwrap();
        assert_eq!(b, json!({"name": "b", "key": "key-bbbb-2"}));
        // `--scope` fills in the rows that name none (never `*` by default).
        let narrow = ["messages:read".to_string()];
        let lines: Vec<_> = csv(file.as_bytes(), &narrow).unwrap().collect();
        let a: Value = serde_json::from_str(lines[0].json.as_ref().unwrap()).unwrap();
        assert_eq!(a["scopes"], json!(["messages:send", "instance:read"]), "a row's own scopes win");
        let b: Value = serde_json::from_str(lines[1].json.as_ref().unwrap()).unwrap();
        assert_eq!(b["scopes"], json!(["messages:read"]));
        let lines: Vec<_> = csv("name,key\nc,key-cccc-3\n".as_bytes(), &narrow).unwrap().collect();
        let c: Value = serde_json::from_str(lines[0].json.as_ref().unwrap()).unwrap();
        assert_eq!(c["scopes"], json!(["messages:read"]), "no scopes column at all");
        assert!(csv("name,sha256\nx,abcd\n".as_bytes(), &[]).is_ok());
        assert!(csv("name,key,sha256\n".as_bytes(), &[]).is_err());
        assert!(csv("key\n".as_bytes(), &[]).is_err());
    }
}
