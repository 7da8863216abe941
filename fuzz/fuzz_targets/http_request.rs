//! Fuzzes `exposition::request::parse`, the HTTP request-head parser of
//! `viewer --http` and `agent --metrics`, the way both servers use it: on
//! every prefix of what a client sent, as the bytes arrive.
//!
//! Properties:
//! - no panic, whatever the bytes;
//! - a complete head is within the limit, and parses the same from its own
//!   bytes alone (what follows it cannot change it);
//! - the answer is settled at the first prefix that is not "need more":
//!   every longer prefix gives the same request or the same kind of error
//!   (a head at the limit is refused, never accepted later);
//! - "need more" only below the limit.

#![no_main]

use exposition::request::{parse, RequestError, MAX_HEAD_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_HEAD_LEN + 64)];
    let mut settled = None;
    for end in 0..=data.len() {
        let result = parse(&data[..end]);
        match &result {
            Ok(None) => {
                assert!(end < MAX_HEAD_LEN, "need more at {end} bytes");
                assert!(settled.is_none(), "settled, then need more at {end}");
            }
            Ok(Some(req)) => {
                assert!(req.head_len <= end && req.head_len <= MAX_HEAD_LEN);
                assert_eq!(parse(&data[..req.head_len]), Ok(Some(req.clone())));
            }
            Err(_) => {}
        }
        match (&settled, &result) {
            (None, Ok(None)) => {}
            (None, _) => settled = Some(result),
            (Some(Ok(Some(first))), now) => assert_eq!(now, &Ok(Some(first.clone()))),
            (Some(Err(first)), Err(now)) => assert_eq!(kind(first), kind(now), "{first} then {now}"),
            (Some(first), now) => panic!("{first:?} then {now:?} at {end} bytes"),
        }
    }
});

fn kind(e: &RequestError) -> &'static str {
    match e {
        RequestError::TooLarge { .. } => "too large",
        RequestError::TooManyHeaders { .. } => "too many headers",
        RequestError::Malformed(_) => "malformed",
    }
}
