//! token04 room tokens: decoding arbitrary strings never panics, and any claims
//! round-trip through both layouts.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use tokengate::room::{self, Mode, RoomClaims};

const SECRET: &[u8; 32] = b"fa94dd0f974cf2e293728a526b028271";

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    token: &'a str,
    user_id: String,
    payload: String,
    nonce: i32,
    ctime: i64,
    ttl: u32,
    app_id: u32,
    cbc: bool,
    iv: [u8; 16],
}

fuzz_target!(|input: Input<'_>| {
    let _ = room::decode(SECRET, input.token);
    let claims = RoomClaims {
        app_id: input.app_id,
        user_id: input.user_id,
        nonce: input.nonce,
        ctime: input.ctime,
        expire: input.ctime.saturating_add(i64::from(input.ttl)),
        payload: input.payload,
    };
    let (mode, iv) = if input.cbc { (Mode::Cbc, &input.iv[..]) } else { (Mode::Gcm, &input.iv[..12]) };
    if let Ok(token) = room::encode(SECRET, &claims, mode, iv) {
        let (back, back_mode) = room::decode(SECRET, &token).expect("an encoded token decodes");
        assert_eq!(back, claims);
        assert_eq!(back_mode, mode);
    }
});
