//! The test vectors of `spec/private-data.md`, checked against the code.
//!
//! The sealed vector is also decrypted here with `chacha20poly1305` directly, from the key
//! derivation and nonce layout the page states, so the page (not just the code) is what is
//! checked. To print the vectors after a deliberate format change:
//! `cargo test -p warren-storage-mesh --test private_vectors -- --ignored --nocapture print`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce, aead::Aead, aead::Payload};
use warren_protocol::spec_text::{SpecVector, extract_vectors};
use warren_storage_mesh::{
    Capability, Class, Codec, ContentId, Error, FileKey, SealOptions,
    seal::{self, Opener, padme},
};

const PAGE: &str = include_str!("../../spec/private-data.md");

fn key() -> FileKey {
    FileKey::from_bytes(std::array::from_fn(|i| i as u8))
}

fn opts() -> SealOptions {
    SealOptions {
        class: Class::Private,
        name: Some("hello.txt".into()),
        media_type: Some("text/plain".into()),
    }
}

const HELLO: &[u8] = b"hello\n";

fn sealed_hello() -> Vec<u8> {
    let mut out = Vec::new();
    seal::seal(&key(), &opts(), HELLO, &mut out).unwrap();
    out
}

fn vector(name: &str) -> SpecVector {
    extract_vectors(PAGE)
        .unwrap()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no vector {name} in spec/private-data.md"))
}

/// A line `NAME: VALUE` inside the page's text-vector block.
fn text_vector(name: &str) -> String {
    let prefix = format!("{name}: ");
    PAGE.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no text vector {name}"))
        .trim()
        .to_owned()
}

fn open(bytes: &[u8], key: &FileKey) -> Result<Vec<u8>, Error> {
    let cid = ContentId::of_block(Codec::Cbor, b"vector");
    let mut out = Vec::new();
    let mut opener = Opener::new(cid, key, bytes.len() as u64, &mut out)?;
    use std::io::Write;
    if opener.write_all(bytes).is_err() {
        return Err(opener.take_error().unwrap());
    }
    opener.finish()?;
    Ok(out)
}

#[test]
fn the_inner_stream_and_sealed_vectors_match_the_code() {
    let inner = vector("inner-hello").bytes;
    let sealed = vector("sealed-hello").bytes;
    assert_eq!(
        sealed_hello(),
        sealed,
        "the code seals differently from the page"
    );
    // Decrypt with the page's derivation: cipher key and nonce prefix from BLAKE3 derive_key.
    let k = blake3::derive_key(seal::CIPHER_KEY_CONTEXT, key().as_bytes());
    let prefix = blake3::derive_key(seal::NONCE_PREFIX_CONTEXT, key().as_bytes());
    let mut nonce = [0u8; 24];
    nonce[..19].copy_from_slice(&prefix[..19]);
    nonce[23] = 1; // segment 0, the last one
    let plain = XChaCha20Poly1305::new(&k.into())
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: seal::SEGMENT_AD,
            },
        )
        .unwrap();
    assert_eq!(
        plain, inner,
        "the sealed vector does not decrypt to the inner vector"
    );
    assert_eq!(open(&sealed, &key()).unwrap(), HELLO);
}

fn sealed_hello_shared() -> Vec<u8> {
    let opts = SealOptions {
        class: Class::Shared,
        ..opts()
    };
    let mut out = Vec::new();
    seal::seal(&key(), &opts, HELLO, &mut out).unwrap();
    out
}

#[test]
fn the_shared_format_2_vectors_match_the_code() {
    let inner = vector("inner-hello-shared").bytes;
    let sealed = vector("sealed-hello-shared").bytes;
    assert_eq!(
        sealed_hello_shared(),
        sealed,
        "the code seals differently from the page"
    );
    // The page's derivation: the nonce is stored first and is the keyed hash of the position
    // and the plaintext.
    let (nonce, body) = sealed.split_at(seal::SIV_NONCE_LEN);
    let k = blake3::derive_key(seal::CIPHER_KEY_CONTEXT, key().as_bytes());
    let plain = XChaCha20Poly1305::new(&k.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: body,
                aad: seal::SEGMENT_AD_SIV,
            },
        )
        .unwrap();
    assert_eq!(
        plain, inner,
        "the sealed vector does not decrypt to the inner vector"
    );
    let mut h = blake3::Hasher::new_keyed(&blake3::derive_key(
        seal::SIV_NONCE_CONTEXT,
        key().as_bytes(),
    ));
    h.update(&0u32.to_be_bytes());
    h.update(&[1]); // the last segment
    h.update(&inner);
    assert_eq!(&h.finalize().as_bytes()[..24], nonce);
    assert_eq!(open(&sealed, &key()).unwrap(), HELLO);
}

#[test]
fn refused_vectors_are_refused() {
    for v in extract_vectors(PAGE).unwrap() {
        let Some(kind) = &v.error else { continue };
        assert_eq!(kind, "Open", "{}", v.name);
        let err = open(&v.bytes, &key()).unwrap_err();
        assert!(matches!(err, Error::Open { .. }), "{}: {err}", v.name);
    }
}

#[test]
fn text_vectors_match_the_code() {
    let conv =
        seal::convergent_key(&[0; 32], Some("hello.txt"), Some("text/plain"), HELLO).unwrap();
    assert_eq!(text_vector("convergent-key-hello"), conv.to_text());
    let cap = Capability {
        cid: ContentId::of_block(Codec::Cbor, b"manifest"),
        key: key(),
    };
    assert_eq!(text_vector("capability"), cap.to_string());
    assert_eq!(
        text_vector("capability").parse::<Capability>().unwrap(),
        cap
    );
}

#[test]
fn the_padme_table_matches_the_code() {
    let mut rows = 0;
    for line in PAGE.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() != 4 || !cells[0].is_empty() {
            continue;
        }
        if let (Ok(len), Ok(padded)) = (cells[1].parse::<u64>(), cells[2].parse::<u64>()) {
            assert_eq!(padme(len), padded, "padme({len})");
            rows += 1;
        }
    }
    assert!(rows >= 6, "the padme table has {rows} rows");
}

#[test]
#[ignore = "prints the vectors for the spec page"]
fn print() {
    let sealed = sealed_hello();
    println!("sealed-hello ({} bytes):", sealed.len());
    for line in sealed.chunks(32) {
        println!("{}", hex::encode(line));
    }
    let mut flipped = sealed.clone();
    flipped[10] ^= 1;
    println!("flipped: {}", hex::encode(&flipped));
    let shared = sealed_hello_shared();
    println!("sealed-hello-shared ({} bytes):", shared.len());
    for line in shared.chunks(32) {
        println!("{}", hex::encode(line));
    }
    let conv =
        seal::convergent_key(&[0; 32], Some("hello.txt"), Some("text/plain"), HELLO).unwrap();
    println!("convergent-key-hello: {}", conv.to_text());
    let cap = Capability {
        cid: ContentId::of_block(Codec::Cbor, b"manifest"),
        key: key(),
    };
    println!("capability: {cap}");
    for len in [1u64, 2, 9, 100, 1000, 1 << 20, (1 << 20) + 1, 100 << 20] {
        println!("| {len} | {} |", padme(len));
    }
}
