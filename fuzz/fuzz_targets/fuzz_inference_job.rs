//! The inference job decoders (`spec/inference-jobs.md`) on arbitrary bytes: the frame header,
//! every payload type and the model manifest. Never panic; whatever a decoder accepts re-encodes
//! to exactly the input (one encoding per value); an accepted embedding result unpacks to whole
//! vectors. The first byte picks the decoder, the rest is its input. Seeds: the page's vectors.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warren_protocol::inference::{
    EmbedRequest, EmbedResult, GenerateRequest, GenerateResult, JobFailure, ModelManifest,
    TokenChunk, frame, frame_len,
};

macro_rules! round_trip {
    ($ty:ty, $data:expr) => {
        if let Ok(v) = <$ty>::decode($data) {
            let bytes = v.encode().expect("a decoded message encodes");
            assert_eq!(bytes, $data, "accepted a non-canonical {}", <$ty>::WHAT);
        }
    };
}

fuzz_target!(|input: &[u8]| {
    let Some((&which, data)) = input.split_first() else {
        return;
    };
    match which % 8 {
        0 => round_trip!(GenerateRequest, data),
        1 => round_trip!(TokenChunk, data),
        2 => round_trip!(GenerateResult, data),
        3 => round_trip!(EmbedRequest, data),
        4 => {
            round_trip!(EmbedResult, data);
            if let Ok(r) = EmbedResult::decode(data) {
                let vectors = r.unpack();
                assert_eq!(vectors.len() * r.dim as usize * 4, r.vectors.len());
                assert_eq!(EmbedResult::pack(&vectors), r.vectors);
            }
        }
        5 => round_trip!(JobFailure, data),
        6 => round_trip!(ModelManifest, data),
        _ => {
            if let Some(header) = data.get(..4) {
                let header: [u8; 4] = header.try_into().expect("four bytes");
                if let Ok(len) = frame_len(header) {
                    let body = vec![0u8; len];
                    assert_eq!(&frame(&body).expect("a frame of an accepted length")[..4], header);
                }
            }
        }
    }
});
