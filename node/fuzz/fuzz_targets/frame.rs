//! Replies: parsing must never panic, and encoding what was parsed must be stable
//! (encode → parse → encode gives the same bytes) in both protocols.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use raftbus_resp::resp::{encode, FrameDecoder, Limits, Protocol};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let mut decoder = FrameDecoder::new(Limits::default());
    while let Ok(Some(frame)) = decoder.decode(&mut buf) {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            let mut first = BytesMut::new();
            encode(&frame, proto, &mut first);
            let mut again = first.clone();
            let reparsed = FrameDecoder::new(Limits::default())
                .decode(&mut again)
                .expect("our own encoding parses")
                .expect("our own encoding is complete");
            assert!(again.is_empty(), "encoding holds exactly one frame");
            let mut second = BytesMut::new();
            encode(&reparsed, proto, &mut second);
            assert_eq!(first, second);
        }
    }
});
