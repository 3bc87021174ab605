//! Room tokens for real-time apps: ZEGOCLOUD-compatible `token04` (SPEC §7).
//!
//! A token is `"04"` + base64 of: `expire:i64 | iv_len:u16 | iv | len:u16 | ciphertext`,
//! then a trailing `0x01` in the GCM layout (AES-256-GCM, 12-byte nonce, tag appended) or
//! nothing in the legacy CBC layout (AES-256-CBC, PKCS#7, 16-byte IV). The plaintext is
//! compact JSON; its `payload` carries the room and privileges as a JSON string. The key
//! is the UTF-8 bytes of the app's 32-character server secret. Crypto is aws-lc-rs, the
//! provider rustls already uses here.
//!
//! This module is the format alone; issuing and verifying through the admin API are not
//! built yet.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
pub use tokengate_proto::rooms::{Mode, Privilege, Privileges};

/// The signed content of a token, in the field order the SDKs produce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomClaims {
    pub app_id: u32,
    pub user_id: String,
    pub nonce: i32,
    pub ctime: i64,
    pub expire: i64,
    pub payload: String,
}

/// Anything wrong with a presented token: it is answered as `malformed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("room token is malformed")]
pub struct Malformed;

#[derive(Serialize, Deserialize)]
struct Payload {
    room_id: String,
    privilege: PrivilegeMap,
    stream_id_list: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct PrivilegeMap {
    #[serde(rename = "1")]
    login_room: u8,
    #[serde(rename = "2")]
    publish_stream: u8,
}

/// The payload string for a room (empty: any room) and privileges.
pub fn payload(room_id: &str, privileges: Privileges) -> String {
    let p = Payload {
        room_id: room_id.to_string(),
        privilege: PrivilegeMap {
            login_room: u8::from(privileges.login_room),
            publish_stream: u8::from(privileges.publish_stream),
        },
        stream_id_list: None,
    };
    serde_json::to_string(&p).unwrap_or_default()
}

/// Reads a payload string back; `None` when it is not one of ours (e.g. empty).
pub fn parse_payload(payload: &str) -> Option<(String, Privileges)> {
    let p: Payload = serde_json::from_str(payload).ok()?;
    Some((
        p.room_id,
        Privileges { login_room: p.privilege.login_room == 1, publish_stream: p.privilege.publish_stream == 1 },
    ))
}

/// Builds a token. `iv` is 12 random bytes for GCM, 16 for CBC (from a CSPRNG; fixed
/// only in tests that reproduce a reference vector).
pub fn encode(secret: &[u8], claims: &RoomClaims, mode: Mode, iv: &[u8]) -> Result<String, Malformed> {
    let plaintext = serde_json::to_vec(claims).map_err(|_| Malformed)?;
    let mut body = plaintext;
    match mode {
        Mode::Gcm => {
            let nonce: [u8; 12] = iv.try_into().map_err(|_| Malformed)?;
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, secret).map_err(|_| Malformed)?);
            key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
                .map_err(|_| Malformed)?;
        }
        Mode::Cbc => {
            let iv16: [u8; 16] = iv.try_into().map_err(|_| Malformed)?;
            let key =
                PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, secret).map_err(|_| Malformed)?)
                    .map_err(|_| Malformed)?;
            key.less_safe_encrypt(&mut body, EncryptionContext::Iv128(FixedLength::from(iv16)))
                .map_err(|_| Malformed)?;
        }
    }
    let mut out = Vec::with_capacity(8 + 2 + iv.len() + 2 + body.len() + 1);
    out.extend_from_slice(&claims.expire.to_be_bytes());
    out.extend_from_slice(&u16::try_from(iv.len()).map_err(|_| Malformed)?.to_be_bytes());
    out.extend_from_slice(iv);
    out.extend_from_slice(&u16::try_from(body.len()).map_err(|_| Malformed)?.to_be_bytes());
    out.extend_from_slice(&body);
    if mode == Mode::Gcm {
        out.push(1);
    }
    let token = format!("04{}", STANDARD.encode(out));
    // Never issue what `decode` would refuse (found by fuzzing: long claims with many
    // escaped characters made tokens past the decoder's bound).
    if token.len() - 2 > MAX_TOKEN_BASE64 {
        return Err(Malformed);
    }
    Ok(token)
}

/// Longest base64 part of a token `decode` reads.
pub const MAX_TOKEN_BASE64: usize = 8192;

/// Splits `n` bytes off the front of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], Malformed> {
    if input.len() < n {
        return Err(Malformed);
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_u16(input: &mut &[u8]) -> Result<usize, Malformed> {
    let b = take(input, 2)?;
    Ok(usize::from(u16::from_be_bytes([b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)])))
}

/// A token's binary layout, read without any secret.
struct Layout {
    expire: i64,
    iv: Vec<u8>,
    body: Vec<u8>,
    mode: Mode,
}

fn layout(token: &str) -> Result<Layout, Malformed> {
    let b64 = token.strip_prefix("04").ok_or(Malformed)?;
    if b64.len() > MAX_TOKEN_BASE64 {
        return Err(Malformed);
    }
    let raw = STANDARD.decode(b64).map_err(|_| Malformed)?;
    let mut input = raw.as_slice();
    let expire = i64::from_be_bytes(take(&mut input, 8)?.try_into().map_err(|_| Malformed)?);
    let iv_len = take_u16(&mut input)?;
    let iv = take(&mut input, iv_len)?.to_vec();
    let len = take_u16(&mut input)?;
    let body = take(&mut input, len)?.to_vec();
    let mode = match (iv_len, input) {
        (12, [1]) => Mode::Gcm,
        (16, []) => Mode::Cbc,
        _ => return Err(Malformed),
    };
    Ok(Layout { expire, iv, body, mode })
}

/// Whether `token` has a `token04` layout (whatever secret it was sealed with).
pub fn is_well_formed(token: &str) -> bool {
    layout(token).is_ok()
}

/// Opens a token with an app's secret, in either layout. Any tampering, a wrong secret,
/// or an outer expiry that differs from the encrypted one is `Malformed`.
pub fn decode(secret: &[u8], token: &str) -> Result<(RoomClaims, Mode), Malformed> {
    let Layout { expire, iv, mut body, mode } = layout(token)?;
    let plaintext = match mode {
        Mode::Gcm => {
            let nonce: [u8; 12] = iv.try_into().map_err(|_| Malformed)?;
            let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, secret).map_err(|_| Malformed)?);
            let plain = key
                .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
                .map_err(|_| Malformed)?;
            plain.to_vec()
        }
        Mode::Cbc => {
            let iv16: [u8; 16] = iv.try_into().map_err(|_| Malformed)?;
            let key =
                PaddedBlockDecryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_256, secret).map_err(|_| Malformed)?)
                    .map_err(|_| Malformed)?;
            let plain =
                key.decrypt(&mut body, DecryptionContext::Iv128(FixedLength::from(iv16))).map_err(|_| Malformed)?;
            plain.to_vec()
        }
    };
    let claims: RoomClaims = serde_json::from_slice(&plaintext).map_err(|_| Malformed)?;
    // CBC has no authentication tag: the encrypted expiry must match the clear one.
    if claims.expire != expire {
        return Err(Malformed);
    }
    Ok((claims, mode))
}

/// Why `verify` refused a token (SPEC §7 reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    WrongApp,
    Expired,
    RoomMismatch,
    PrivilegeDenied,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::WrongApp => "wrong_app",
            Refusal::Expired => "expired",
            Refusal::RoomMismatch => "room_mismatch",
            Refusal::PrivilegeDenied => "privilege_denied",
        }
    }
}

/// Decodes and checks a token for an app: its `app_id`, expiry (against `now`, Unix
/// seconds), and when asked the room (an empty room in the token means any room) and a
/// privilege. CBC tokens carry no authentication tag, so a changed `app_id` is caught
/// here as `wrong_app` rather than by the decryption.
pub fn verify(
    secret: &[u8],
    app_id: u32,
    token: &str,
    now: i64,
    room: Option<&str>,
    privilege: Option<Privilege>,
) -> Result<RoomClaims, Refusal> {
    let (claims, _) = decode(secret, token).map_err(|_| Refusal::Malformed)?;
    if claims.app_id != app_id {
        return Err(Refusal::WrongApp);
    }
    if claims.expire <= now {
        return Err(Refusal::Expired);
    }
    let (token_room, granted) = parse_payload(&claims.payload).unwrap_or_default();
    if room.is_some_and(|room| !token_room.is_empty() && token_room != room) {
        return Err(Refusal::RoomMismatch);
    }
    let allowed = match privilege {
        None => true,
        Some(Privilege::LoginRoom) => granted.login_room,
        Some(Privilege::PublishStream) => granted.publish_stream,
    };
    if allowed { Ok(claims) } else { Err(Refusal::PrivilegeDenied) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzzer's find: claims whose JSON escaping blew the token past the decoder's
    /// bound were encoded, then refused. Now encode refuses them too.
    #[test]
    fn what_is_encoded_decodes() {
        let claims = RoomClaims {
            app_id: 1,
            user_id: "\0".repeat(2000),
            nonce: 1,
            ctime: 0,
            expire: 60,
            payload: String::new(),
        };
        assert_eq!(encode(&[7; 32], &claims, Mode::Gcm, &[0; 12]), Err(Malformed));
        let small = RoomClaims { user_id: "\0".repeat(64), ..claims };
        let token = encode(&[7; 32], &small, Mode::Gcm, &[0; 12]).unwrap();
        assert_eq!(decode(&[7; 32], &token).unwrap().0, small);
    }

    const SECRET: &[u8] = b"fa94dd0f974cf2e293728a526b028271";
    const VECTOR: &str = "04AAAAAGVT/xAADDAxMjM0NTY3ODlhYgB9Cyp4BFmXo9vH6W6l6qsgemNorDRlqgACz7VEZ9ATqvGMPGkJqxXGWRcJ1E92POo0XybiZWFtVJrzsyoqmO0N62uR382QgEuGBOrLjU6XqXTiuCmr7kpgOKL4yFl1OVUPLGoGhy7UI6LxzPoT9LQl5GnWcYsyNtJcdwaJFxAB";

    fn reference() -> RoomClaims {
        RoomClaims {
            app_id: 1_234_567_890,
            user_id: "user1".into(),
            nonce: 123_456_789,
            ctime: 1_700_000_000,
            expire: 1_700_003_600,
            payload: String::new(),
        }
    }

    #[test]
    fn the_spec_vector_decodes_and_re_encodes_exactly() {
        let (claims, mode) = decode(SECRET, VECTOR).unwrap();
        assert_eq!(claims, reference());
        assert_eq!(mode, Mode::Gcm);
        assert_eq!(encode(SECRET, &reference(), Mode::Gcm, b"0123456789ab").unwrap(), VECTOR);
    }

    #[test]
    fn both_layouts_round_trip_with_privileges() {
        let mut claims = reference();
        claims.payload = payload("room1", Privileges { login_room: true, publish_stream: false });
        assert_eq!(claims.payload, r#"{"room_id":"room1","privilege":{"1":1,"2":0},"stream_id_list":null}"#);
        for (mode, iv) in [(Mode::Gcm, &b"abcdefghijkl"[..]), (Mode::Cbc, &b"abcdefghijklmnop"[..])] {
            let token = encode(SECRET, &claims, mode, iv).unwrap();
            let (back, m) = decode(SECRET, &token).unwrap();
            assert_eq!((back.clone(), m), (claims.clone(), mode));
            assert_eq!(
                parse_payload(&back.payload),
                Some(("room1".to_string(), Privileges { login_room: true, publish_stream: false }))
            );
            assert_eq!(decode(b"00000000000000000000000000000000", &token), Err(Malformed), "wrong secret");
        }
    }

    #[test]
    fn a_bit_flip_anywhere_is_refused() {
        let now = 1_700_000_100;
        for (mode, iv) in [(Mode::Gcm, &b"abcdefghijkl"[..]), (Mode::Cbc, &b"abcdefghijklmnop"[..])] {
            let token = encode(SECRET, &reference(), mode, iv).unwrap();
            assert!(verify(SECRET, 1_234_567_890, &token, now, None, None).is_ok());
            let raw = STANDARD.decode(&token[2..]).unwrap();
            for i in 0..raw.len() {
                for bit in [0x01u8, 0x80] {
                    let mut bad = raw.clone();
                    bad[i] ^= bit;
                    let tampered = format!("04{}", STANDARD.encode(&bad));
                    let refused = verify(SECRET, 1_234_567_890, &tampered, now, None, None);
                    assert!(
                        matches!(refused, Err(Refusal::Malformed | Refusal::WrongApp)),
                        "{mode:?} byte {i} bit {bit:#x}: {refused:?}"
                    );
                    if mode == Mode::Gcm {
                        assert_eq!(decode(SECRET, &tampered), Err(Malformed), "GCM authenticates every byte");
                    }
                }
            }
        }
    }

    #[test]
    fn verify_reasons() {
        let mut claims = reference();
        claims.payload = payload("room1", Privileges { login_room: true, publish_stream: false });
        let token = encode(SECRET, &claims, Mode::Gcm, b"abcdefghijkl").unwrap();
        let now = 1_700_000_100;
        let v = |app, now, room, privilege| {
            verify(SECRET, app, &token, now, room, privilege).map(|_| ()).map_err(Refusal::reason)
        };
        assert_eq!(v(1_234_567_890, now, Some("room1"), Some(Privilege::LoginRoom)), Ok(()));
        assert_eq!(v(42, now, None, None), Err("wrong_app"));
        assert_eq!(v(1_234_567_890, 1_700_003_600, None, None), Err("expired"));
        assert_eq!(v(1_234_567_890, now, Some("room2"), None), Err("room_mismatch"));
        assert_eq!(v(1_234_567_890, now, None, Some(Privilege::PublishStream)), Err("privilege_denied"));
        // The reference vector is long expired.
        assert_eq!(verify(SECRET, 1_234_567_890, VECTOR, 1_800_000_000, None, None).map(|_| ()), Err(Refusal::Expired));
        // An empty room in the token means any room.
        assert_eq!(verify(SECRET, 1_234_567_890, VECTOR, 1_700_000_001, Some("any"), None).map(|_| ()), Ok(()));
    }

    #[test]
    fn garbage_is_malformed_never_a_panic() {
        for t in ["", "04", "03AAAA", "04!!!!", "04AAAAAAAAAAAA==", &format!("04{}", "A".repeat(20_000))] {
            assert_eq!(decode(SECRET, t), Err(Malformed), "{t:.20}");
        }
    }
}
