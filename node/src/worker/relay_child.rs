//! The relay worker's side: `warren __worker relay MEMORY` (spec/worker.md). It confines itself
//! like a model worker, then does the onion relay runner's work on a stranger's bytes, one
//! request at a time: decoding a `BEGIN`'s request (and checking an inference job's encoding),
//! and encoding an upload's chunks as blocks (brotli, BLAKE3). It reads no file and holds no
//! descriptor but its pipe; the node stores what it answers only after checking each block
//! against its id (`Store::put_encoded`).

use serde_bytes::ByteBuf;
use warren_protocol::onion::request::Request;
use warren_protocol::{CHUNK_SIZE, Codec, ContentId};

use super::child::{confine_and_say, dup};
use super::wire::{self, Failure, FromWorker, RelayRequest, ToWorker};

/// A relay worker's life (see the module doc).
pub fn relay(memory: u64) -> Result<(), String> {
    let mut pipe = dup(std::io::stdout()).map_err(|e| format!("stdout: {e}"))?;
    confine_and_say(&mut pipe, memory)?;
    loop {
        let request = match wire::read::<ToWorker>(&mut pipe) {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("pipe: {e}")),
        };
        let answer = match request {
            ToWorker::Decode { request } => decode(&request),
            ToWorker::Encode { chunk } => encode(&chunk),
            _ => Err("a relay worker runs no model".to_string()),
        };
        let answer = answer.unwrap_or_else(|mut detail| {
            let mut n = detail.len().min(4096);
            while !detail.is_char_boundary(n) {
                n -= 1;
            }
            detail.truncate(n);
            FromWorker::Failed(Failure {
                code: "error".into(),
                detail,
                over: None,
            })
        });
        wire::write(&mut pipe, &answer).map_err(|e| format!("pipe: {e}"))?;
    }
}

/// A relay request from a `BEGIN`'s bytes; an inference job must decode as a generation or an
/// embedding request.
pub fn decode(bytes: &[u8]) -> Result<FromWorker, String> {
    let request = match Request::decode(bytes).map_err(|e| e.to_string())? {
        Request::Get(cid) => RelayRequest::Get(ByteBuf::from(cid.to_bytes())),
        Request::Put { name } => RelayRequest::Put(name),
        Request::Infer(job) => {
            use warren_protocol::inference::{EmbedRequest, GenerateRequest};
            if let Err(e) = GenerateRequest::decode(&job) {
                EmbedRequest::decode(&job).map_err(|_| format!("bad inference job: {e}"))?;
            }
            RelayRequest::Infer(ByteBuf::from(job))
        }
    };
    Ok(FromWorker::Request(request))
}

/// One chunk of an upload as its block and the block's id.
pub fn encode(chunk: &[u8]) -> Result<FromWorker, String> {
    if chunk.is_empty() || chunk.len() > CHUNK_SIZE {
        return Err(format!(
            "a chunk of {} bytes (1 to {CHUNK_SIZE})",
            chunk.len()
        ));
    }
    let block = warren_storage_mesh::chunk::encode_block(chunk);
    let cid = ContentId::of_block(Codec::Raw, &block);
    Ok(FromWorker::Block {
        cid: ByteBuf::from(cid.to_bytes()),
        block: ByteBuf::from(block),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is the failure report

    use super::*;

    #[test]
    fn requests_decode_as_the_protocol_says_and_bad_ones_fail() {
        let cid = ContentId::of_block(Codec::Raw, b"x");
        let get = Request::Get(cid).encode().unwrap();
        assert_eq!(
            decode(&get).unwrap(),
            FromWorker::Request(RelayRequest::Get(ByteBuf::from(cid.to_bytes())))
        );
        let put = Request::Put {
            name: Some("a".into()),
        };
        assert_eq!(
            decode(&put.encode().unwrap()).unwrap(),
            FromWorker::Request(RelayRequest::Put(Some("a".into())))
        );
        for bad in [&[][..], &[9, 1], &[1, 0xff, 0xff], &[3, 0xbf, 0xbf]] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_chunk_encodes_as_the_store_would_and_empty_or_oversized_ones_fail() {
        let chunk = vec![7u8; 100_000];
        let FromWorker::Block { cid, block } = encode(&chunk).unwrap() else {
            panic!("not a block")
        };
        assert_eq!(
            block.as_slice(),
            warren_storage_mesh::chunk::encode_block(&chunk)
        );
        assert_eq!(
            ContentId::from_bytes(&cid).unwrap(),
            ContentId::of_block(Codec::Raw, &block)
        );
        assert!(encode(&[]).is_err());
        assert!(encode(&vec![0u8; CHUNK_SIZE + 1]).is_err());
    }
}
