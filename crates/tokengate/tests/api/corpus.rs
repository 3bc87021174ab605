//! A corpus of Z-API-style requests, written for these tests: the shapes real traffic
//! to a WhatsApp messaging API takes — many `POST` JSON bodies with text, numbers,
//! nested objects and non-ASCII text, `GET`s with path parameters and query strings,
//! `PUT`s and `DELETE`s, multipart form uploads and raw binary uploads, and headers
//! (`Client-Token` already present, an upstream's own `Authorization`).

use serde_json::{Value, json};

/// One request of the corpus.
pub struct CorpusRequest {
    pub name: String,
    pub method: &'static str,
    /// Path after the instance token, with its query string if any.
    pub path_and_query: String,
    pub content_type: Option<String>,
    pub body: Option<Vec<u8>>,
    /// Extra headers (the test adds `Client-Token`).
    pub headers: Vec<(&'static str, String)>,
}

const PHONES: [&str; 3] = ["5511999999999", "5521988887777", "120363019502650977-group"];

fn json_post(name: &str, path: &str, body: Value) -> CorpusRequest {
    CorpusRequest {
        name: name.to_string(),
        method: "POST",
        path_and_query: path.to_string(),
        content_type: Some("application/json".into()),
        body: Some(body.to_string().into_bytes()),
        headers: Vec::new(),
    }
}

fn bare(name: &str, method: &'static str, path_and_query: &str) -> CorpusRequest {
    CorpusRequest {
        name: name.to_string(),
        method,
        path_and_query: path_and_query.to_string(),
        content_type: None,
        body: None,
        headers: Vec::new(),
    }
}

/// A `multipart/form-data` upload of a small file, built by hand.
fn multipart(name: &str, path: &str, file_name: &str, file_type: &str, content: &[u8]) -> CorpusRequest {
    let boundary = "----tokengate-corpus-7c1f";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n5511999999999\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {file_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    CorpusRequest {
        name: name.to_string(),
        method: "POST",
        path_and_query: path.to_string(),
        content_type: Some(format!("multipart/form-data; boundary={boundary}")),
        body: Some(body),
        headers: Vec::new(),
    }
}

/// Bytes that are not text: every byte value, then a fake PNG header.
fn binary_blob(len: usize) -> Vec<u8> {
    let mut blob = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    blob.extend((0..len).map(|i| (i * 7 % 256) as u8));
    blob
}

pub fn zapi_corpus() -> Vec<CorpusRequest> {
    let mut all = Vec::new();
    // Messages of every kind, to each kind of recipient.
    let sends: [(&str, Value); 16] = [
        ("send-text", json!({"message": "Olá! Seu pedido nº 42 saiu para entrega 🚚", "delayMessage": 3})),
        ("send-image", json!({"image": "https://example.com/p.png", "caption": "Promoção", "viewOnce": false})),
        ("send-sticker", json!({"sticker": "data:image/webp;base64,UklGRhIAAABXRUJQVlA4", "stickerAuthor": "ana"})),
        ("send-gif", json!({"gif": "https://example.com/a.mp4", "caption": ""})),
        ("send-audio", json!({"audio": "https://example.com/a.mp3", "viewOnce": true, "waveform": true})),
        ("send-video", json!({"video": "https://example.com/v.mp4", "caption": "vídeo"})),
        ("send-ptv", json!({"ptv": "https://example.com/v.mp4"})),
        (
            "send-contact",
            json!({"contactName": "Zé", "contactPhone": "5511988880000", "contactBusinessDescription": null}),
        ),
        (
            "send-contacts",
            json!({"contacts": [{"name": "A", "phones": ["5511900000001"]}, {"name": "B", "phones": []}]}),
        ),
        (
            "send-location",
            json!({"title": "Loja", "address": "Av. Paulista, 1000", "latitude": -23.5614, "longitude": -46.6558}),
        ),
        (
            "send-link",
            json!({"message": "veja https://example.com", "image": "https://example.com/i.png", "linkUrl": "https://example.com", "title": "T", "linkDescription": "d"}),
        ),
        (
            "send-button-list",
            json!({"message": "Escolha", "buttonList": {"buttons": [{"id": "1", "label": "Sim"}, {"id": "2", "label": "Não"}]}}),
        ),
        (
            "send-option-list",
            json!({"message": "Menu", "optionList": {"title": "Opções", "buttonLabel": "Abrir", "options": [{"id": "a", "title": "A", "description": "x"}]}}),
        ),
        ("send-poll", json!({"message": "Qual?", "poll": [{"name": "A"}, {"name": "B"}], "pollMaxOptions": 1})),
        ("send-reaction", json!({"reaction": "❤️", "messageId": "3EB0C767D71D"})),
        ("send-event", json!({"event": {"name": "Live", "dateTime": "2026-12-24T20:00:00-03:00", "canceled": false}})),
    ];
    for (path, body) in &sends {
        for phone in PHONES {
            let mut body = body.clone();
            body["phone"] = json!(phone);
            all.push(json_post(&format!("{path} to {phone}"), &format!("/{path}"), body));
        }
    }
    for ext in ["pdf", "docx", "xlsx", "zip"] {
        let body = json!({"phone": PHONES[0], "document": format!("https://example.com/f.{ext}"), "fileName": format!("relatório.{ext}")});
        all.push(json_post(&format!("send-document {ext}"), &format!("/send-document/{ext}"), body));
    }
    // Chats, contacts, groups, newsletters, communities, business: actions with bodies.
    let actions: [(&str, Value); 24] = [
        ("modify-chat", json!({"phone": PHONES[0], "action": "archive"})),
        ("read-message", json!({"phone": PHONES[0], "messageId": "3EB0C767D71D"})),
        ("delete-message", json!({"phone": PHONES[0], "messageId": "3EB0", "owner": true})),
        ("forward-message", json!({"phone": PHONES[1], "messageId": "3EB0", "messagePhone": PHONES[0]})),
        (
            "pin-message",
            json!({"phone": PHONES[0], "messageId": "3EB0", "messageAction": "pin", "pinMessageDuration": "7_days"}),
        ),
        ("create-group", json!({"autoInvite": true, "groupName": "Clientes VIP", "phones": [PHONES[0], PHONES[1]]})),
        ("update-group-name", json!({"groupId": PHONES[2], "groupName": "Novo nome"})),
        ("update-group-description", json!({"groupId": PHONES[2], "groupDescription": "Descrição com acentuação"})),
        ("add-participant", json!({"groupId": PHONES[2], "phones": [PHONES[1]], "autoInvite": true})),
        ("remove-participant", json!({"groupId": PHONES[2], "phones": [PHONES[1]]})),
        ("add-admin", json!({"groupId": PHONES[2], "phones": [PHONES[0]]})),
        ("leave-group", json!({"groupId": PHONES[2]})),
        (
            "group-settings",
            json!({"phone": PHONES[2], "adminOnlyMessage": true, "adminOnlySettings": false, "requireAdminApproval": true}),
        ),
        ("create-newsletter", json!({"name": "Novidades", "description": "semanal"})),
        ("search-newsletter", json!({"limit": 50, "filters": {"countryCodes": ["BR", "PT"]}})),
        ("newsletter/follow", json!({"id": "120363166555745933@newsletter"})),
        ("communities", json!({"name": "Bairro", "description": "vizinhos"})),
        ("communities/link", json!({"communityId": "98372465382764532938", "groupsPhones": [PHONES[2]]})),
        (
            "business/hours",
            json!({"timezone": "America/Sao_Paulo", "days": [{"dayOfWeek": "MONDAY", "openTime": "08:00", "closeTime": "18:00"}]}),
        ),
        ("business/tags", json!({"name": "pago", "color": 3})),
        ("catalogs/collection", json!({"name": "Verão", "productIds": ["6643", "7771"]})),
        (
            "products",
            json!({"name": "Camisa", "price": 59.9, "currency": "BRL", "images": ["https://example.com/c.png"], "isHidden": false}),
        ),
        ("update-webhook-received", json!({"value": "https://hooks.example.com/zapi?src=whatsapp&v=2"})),
        ("update-every-webhooks", json!({"value": "https://hooks.example.com/all", "notifySentByMe": true})),
    ];
    for (path, body) in actions {
        all.push(json_post(path, &format!("/{path}"), body));
    }
    // Reads: path parameters and query strings.
    let reads = [
        "/status",
        "/qr-code",
        "/qr-code/image",
        "/device",
        "/me",
        "/chats",
        "/chats?page=1&pageSize=100",
        "/chats?page=2&pageSize=20&filter=unread",
        "/contacts",
        "/contacts?page=1&pageSize=50",
        "/queue",
        "/queue?page=1&pageSize=10&count=true",
        "/groups?page=1&pageSize=5",
        "/newsletter",
        "/business/tags",
        "/catalogs?nextCursor=eyJwYWdlIjoyfQ%3D%3D",
        "/phone-exists-batch?phones=5511999999999,5521988887777",
        "/accept-invite-group?url=https%3A%2F%2Fchat.whatsapp.com%2FAbCdEf123",
        "/group-invitation-metadata?url=https%3A%2F%2Fchat.whatsapp.com%2FXyZ",
        "/search?q=caf%C3%A9%20com%20leite&limit=5",
    ];
    for path in reads {
        all.push(bare(&format!("GET {path}"), "GET", path));
    }
    for phone in PHONES {
        for what in ["chats", "contacts", "profile-picture", "phone-exists", "chat-messages", "group-metadata"] {
            let path = format!("/{what}/{phone}");
            all.push(bare(&format!("GET {path}"), "GET", &path));
        }
        let path = format!("/chat-messages/{phone}?amount=10&lastMessageId=3EB0C767D71D");
        all.push(bare(&format!("GET {path}"), "GET", &path));
    }
    // Updates and deletions.
    for (path, body) in [
        ("/update-auto-read-message", json!({"value": true})),
        ("/update-call-reject-auto", json!({"value": false})),
        ("/update-call-reject-message", json!({"value": "Não atendemos ligações"})),
        ("/profile-name", json!({"value": "Loja da Ana"})),
        ("/profile-description", json!({"value": "Seg a sex, 8h–18h"})),
    ] {
        let mut r = json_post(&format!("PUT {path}"), path, body);
        r.method = "PUT";
        all.push(r);
    }
    for path in [
        "/queue",
        "/queue/5511999999999",
        "/messages?messageId=3EB0&phone=5511999999999&owner=true",
        "/business/tags/7",
        "/products/6643",
        "/disconnect",
        "/restart",
    ] {
        let method = if path == "/disconnect" || path == "/restart" { "GET" } else { "DELETE" };
        all.push(bare(&format!("{method} {path}"), method, path));
    }
    // Texts at the edges: long, emoji only, empty, escapes inside JSON.
    for phone in PHONES {
        for (label, message) in [
            ("long", "a".repeat(4096)),
            ("emoji", "👍🏽🔥✅".to_string()),
            ("escapes", "linha 1\nlinha 2\t\"aspas\" \\ barra".to_string()),
        ] {
            let body = json!({"phone": phone, "message": message});
            all.push(json_post(&format!("send-text {label} to {phone}"), "/send-text", body));
        }
        let reply =
            json!({"phone": phone, "message": "respondendo", "messageId": "3EB0C767D71D", "mentioned": [PHONES[1]]});
        all.push(json_post(&format!("reply with mention to {phone}"), "/send-text", reply));
        all.push(json_post(&format!("call {phone}"), "/send-call", json!({"phone": phone, "callDuration": 5})));
        let contact = json!([{"firstName": "Maria", "lastName": "São João", "phone": phone}]);
        all.push(json_post(&format!("add contact {phone}"), "/contacts/add", contact));
        all.push(bare(&format!("clear chat {phone}"), "DELETE", &format!("/chats/{phone}/messages")));
        for action in ["block", "unblock", "report"] {
            let body = json!({"phone": phone, "action": action});
            all.push(json_post(&format!("modify-blocked {action} {phone}"), "/modify-blocked", body));
        }
    }
    for (kind, body) in [
        ("text", json!({"message": "Aberto hoje até 22h"})),
        ("image", json!({"image": "https://example.com/s.png", "caption": "novidade"})),
        ("video", json!({"video": "https://example.com/s.mp4"})),
    ] {
        all.push(json_post(&format!("status {kind}"), &format!("/send-{kind}-status"), body));
    }
    for id in ["3EB0C767D71D", "BAE5F1A2", "ABCDEF0123456789"] {
        all.push(bare(&format!("message status {id}"), "GET", &format!("/message-status/{id}")));
    }
    for hook in ["delivery", "disconnected", "connected", "message-status", "chat-presence", "send"] {
        let path = format!("/update-webhook-{hook}");
        let mut r = json_post(&path, &path, json!({"value": format!("https://hooks.example.com/{hook}")}));
        r.method = "PUT";
        all.push(r);
    }
    // Uploads: multipart forms and raw binary bodies.
    for (name, file, ty) in [
        ("upload image", "foto.png", "image/png"),
        ("upload audio", "voz.ogg", "audio/ogg"),
        ("upload document", "contrato final.pdf", "application/pdf"),
    ] {
        all.push(multipart(name, "/send-document/upload", file, ty, &binary_blob(4096)));
    }
    for (len, ty) in [(1, "application/octet-stream"), (65_536, "image/png"), (300_000, "video/mp4")] {
        let mut r = bare(&format!("binary {len} bytes"), "POST", "/upload-media?type=binary");
        r.content_type = Some(ty.to_string());
        r.body = Some(binary_blob(len));
        all.push(r);
    }
    // An upstream's own Authorization passes untouched on an instance without rules.
    let mut own_auth = json_post("own authorization", "/send-text", json!({"phone": PHONES[0], "message": "x"}));
    own_auth.headers.push(("Authorization", "Basic dXNlcjpwYXNz".to_string()));
    all.push(own_auth);
    let mut cookie = bare("cookie and accept", "GET", "/status");
    cookie.headers.push(("Cookie", "session=abc; theme=dark".to_string()));
    cookie.headers.push(("Accept", "application/json, text/plain, */*".to_string()));
    all.push(cookie);
    let mut extra = json_post("extra headers", "/send-text", json!({"phone": PHONES[1], "message": "y"}));
    extra.headers.push(("Accept-Language", "pt-BR".to_string()));
    extra.headers.push(("X-Request-Id", "9f8e7d6c".to_string()));
    all.push(extra);
    all
}
