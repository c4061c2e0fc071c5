//! Client input: parsing must never panic, must not depend on how the bytes are split into
//! reads, and every parsed command must go through `Command::parse` without panicking.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use raftbus_resp::command::Command;
use raftbus_resp::resp::{Limits, ProtocolError, RequestDecoder};

type Outcome = Vec<Result<Vec<bytes::Bytes>, ProtocolError>>;

fn feed(input: &[u8], chunk: usize, limits: Limits) -> Outcome {
    let mut decoder = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pieces = input.chunks(chunk.max(1));
    loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(args)) => out.push(Ok(args)),
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e));
                    if fatal {
                        return out;
                    }
                }
            }
        }
        match pieces.next() {
            Some(piece) => buf.extend_from_slice(piece),
            None => return out,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let limits = if control & 0x80 == 0 {
        Limits::default()
    } else {
        Limits {
            max_bulk_len: usize::from(control & 0x0f) + 1,
            max_array_len: usize::from((control >> 4) & 0x07),
            max_inline_len: usize::from(control & 0x1f) + 1,
        }
    };
    let whole = feed(input, input.len(), limits);
    let chunked = feed(input, usize::from(control & 0x0f) + 1, limits);
    assert_eq!(whole, chunked);
    for args in whole.iter().flatten() {
        let _ = Command::parse(args);
    }
});
