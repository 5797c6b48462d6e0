//! The test vectors of `spec/storage.md`, checked against the code.
//!
//! Two kinds: the file-id table (a row `| NAME | size | `id` |` per input) and hex blocks, in the
//! format of `warren-protocol`'s `tests/spec_vectors.rs`:
//!
//! ````text
//! <!-- vector: NAME -->             valid bytes, compared with what the code produces
//! <!-- vector: NAME error: KIND --> bytes every decoder must refuse, with Error::KIND
//! ```hex
//! a6 67 76657273696f6e   # everything after `#` on a line is a comment
//! ```
//! ````
//!
//! To regenerate after a deliberate format change:
//! `cargo test -p warren-storage-mesh --test spec_vectors -- --ignored --nocapture print_vectors`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use std::collections::BTreeMap;

use warren_protocol::{Directory, Error, Manifest};
use warren_storage_mesh::{CHUNK_SIZE, Codec, ContentId, PutOptions, Store, chunk};

const STORAGE_MD: &str = include_str!("../../spec/storage.md");

// ---------------------------------------------------------------------------------------------
// The inputs the page states in prose.

/// The pattern: byte i is i mod 251.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// The SplitMix64 stream of seed 1, 1 MiB.
fn random() -> Vec<u8> {
    warren_storage_mesh::testdata::random_chunk(1, CHUNK_SIZE)
}

fn named() -> PutOptions {
    PutOptions {
        name: Some("hello.txt".into()),
        media_type: Some("text/plain".into()),
        pin: true,
    }
}

/// The files of the id table: name, bytes, options.
fn files() -> Vec<(&'static str, Vec<u8>, PutOptions)> {
    vec![
        ("empty", vec![], PutOptions::default()),
        ("hello", b"hello\n".to_vec(), PutOptions::default()),
        ("hello-named", b"hello\n".to_vec(), named()),
        ("pattern-1mib", pattern(CHUNK_SIZE), PutOptions::default()),
        (
            "pattern-1mib-plus-1",
            pattern(CHUNK_SIZE + 1),
            PutOptions::default(),
        ),
        ("random-1mib", random(), PutOptions::default()),
        (
            "random-tiled-1mib",
            random()[..4096]
                .iter()
                .copied()
                .cycle()
                .take(CHUNK_SIZE)
                .collect(),
            PutOptions::default(),
        ),
        (
            "random-7bit-1mib",
            random().iter().map(|b| b & 0x7f).collect(),
            PutOptions::default(),
        ),
    ]
}

/// Puts every file into a fresh store; returns the store and each file's id by name.
fn put_all() -> (tempfile::TempDir, Store, BTreeMap<&'static str, ContentId>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), u64::MAX).unwrap();
    let ids = files()
        .into_iter()
        .map(|(name, data, opts)| {
            (
                name,
                store.put(data.as_slice(), &opts, &|_| {}).unwrap().cid,
            )
        })
        .collect();
    (dir, store, ids)
}

/// The directory of the spec's table: `hello.txt` (the file `hello-named`) and `empty/` (an
/// empty directory). Returns its id and the empty directory's id.
fn put_dir(store: &Store, ids: &BTreeMap<&'static str, ContentId>) -> (ContentId, ContentId) {
    let empty = store.put_directory(Vec::new(), true).unwrap().cid;
    let dir = store
        .put_directory(
            vec![
                ("hello.txt".into(), ids["hello-named"]),
                ("empty".into(), empty),
            ],
            true,
        )
        .unwrap()
        .cid;
    (dir, empty)
}

/// The listing of a directory (its one chunk's payload).
fn listing(store: &Store, dir: &ContentId) -> Vec<u8> {
    store.read_directory(dir).unwrap().encode().unwrap()
}

fn chunk_block(data: &[u8]) -> Vec<u8> {
    chunk::encode_block(data)
}

// ---------------------------------------------------------------------------------------------
// Extraction.

use warren_protocol::spec_text::SpecVector as Vector;

fn vectors(page: &str) -> Vec<Vector> {
    warren_protocol::spec_text::extract_vectors(page).unwrap_or_else(|e| panic!("{e}"))
}

/// The id in the table row for `name`.
fn table_id(name: &str) -> ContentId {
    let prefix = format!("| {name} |");
    let row = STORAGE_MD
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no table row for {name}"));
    let id = row
        .split('`')
        .nth(1)
        .unwrap_or_else(|| panic!("no `id` in {row}"));
    id.parse().unwrap()
}

fn assert_error_kind(name: &str, err: &Error, kind: &str) {
    let debug = format!("{err:?}");
    let got = debug.split([' ', '(', '{']).next().unwrap_or("");
    assert_eq!(got, kind, "vector {name}: {err}");
}

// ---------------------------------------------------------------------------------------------
// The checks.

#[test]
fn file_ids() {
    let (_dir, store, ids) = put_all();
    for (name, data, _) in files() {
        assert_eq!(ids[name], table_id(name), "file id of {name}");
        let mut out = Vec::new();
        store.get(&ids[name], &mut out, &|_| {}).unwrap();
        assert_eq!(out, data, "{name} reads back");
    }
}

#[test]
fn directory_ids() {
    let (_dir, store, ids) = put_all();
    let (dir, empty) = put_dir(&store, &ids);
    assert_eq!(dir, table_id("dir-hello"), "directory id");
    assert_eq!(empty, table_id("dir-empty"), "empty directory id");
}

#[test]
fn hex_vectors() {
    let (_dir, store, ids) = put_all();
    let (dir, empty) = put_dir(&store, &ids);
    let all = vectors(STORAGE_MD);
    let good: BTreeMap<&str, &[u8]> = all
        .iter()
        .filter(|v| v.error.is_none())
        // The piece manifest's vector is checked by `pieces::tests::spec_vectors`.
        .filter(|v| !v.name.starts_with("piece-"))
        .map(|v| (v.name.as_str(), v.bytes.as_slice()))
        .collect();
    let expected: BTreeMap<&str, Vec<u8>> = [
        ("block-hello", chunk_block(b"hello\n")),
        (
            "cid-hello-chunk",
            ContentId::of_block(Codec::Raw, &chunk_block(b"hello\n")).to_bytes(),
        ),
        ("block-pattern", chunk_block(&pattern(CHUNK_SIZE))),
        ("manifest-empty", store.get_block(&ids["empty"]).unwrap()),
        ("manifest-hello", store.get_block(&ids["hello"]).unwrap()),
        (
            "manifest-hello-named",
            store.get_block(&ids["hello-named"]).unwrap(),
        ),
        (
            "manifest-pattern-1mib-plus-1",
            store.get_block(&ids["pattern-1mib-plus-1"]).unwrap(),
        ),
        ("listing-dir-hello", listing(&store, &dir)),
        ("manifest-dir-hello", store.get_block(&dir).unwrap()),
        ("listing-dir-empty", listing(&store, &empty)),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        good.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "valid vectors on the page"
    );
    for (name, bytes) in &expected {
        assert_eq!(good[name], bytes.as_slice(), "vector {name}");
        if name.starts_with("manifest-") {
            let m = Manifest::decode(bytes).unwrap();
            assert_eq!(&m.encode().unwrap(), bytes, "{name} re-encodes");
        }
        if name.starts_with("listing-") {
            let d = Directory::decode(&dir, bytes).unwrap();
            assert_eq!(&d.encode().unwrap(), bytes, "{name} re-encodes");
        }
    }

    let bad: Vec<&Vector> = all.iter().filter(|v| v.error.is_some()).collect();
    assert!(bad.len() >= 6, "invalid vectors on the page");
    for v in bad {
        let kind = v.error.as_deref().unwrap_or_default();
        let err = if v.name.starts_with("invalid-cid") {
            ContentId::from_bytes(&v.bytes).expect_err(&v.name)
        } else if v.name.starts_with("invalid-listing") {
            Directory::decode(&dir, &v.bytes).expect_err(&v.name)
        } else {
            Manifest::decode(&v.bytes).expect_err(&v.name)
        };
        assert_error_kind(&v.name, &err, kind);
    }
}

#[test]
fn the_sample_test_decides_as_the_page_says() {
    let (_dir, store, ids) = put_all();
    for (name, raw) in [
        ("random-1mib", true),
        ("random-tiled-1mib", false),
        ("random-7bit-1mib", false),
        ("pattern-1mib", false),
    ] {
        let data = files().into_iter().find(|f| f.0 == name).unwrap().1;
        assert_eq!(chunk::looks_incompressible(&data), raw, "{name}");
        let root = Manifest::decode(&store.get_block(&ids[name]).unwrap()).unwrap();
        let block = store.get_block(&root.entries[0].cid).unwrap();
        assert_eq!(block[0] == chunk::TAG_RAW, raw, "{name} stored raw?");
    }
}

#[test]
fn the_page_states_the_parameters_the_code_uses() {
    for fact in [
        format!("quality **{}**", chunk::BROTLI_QUALITY),
        format!("lgwin **{}**", chunk::BROTLI_LGWIN),
        format!("**{}** bytes", CHUNK_SIZE),
        format!("at most **{}** entries", warren_protocol::MANIFEST_FANOUT),
        format!("**{}** bytes (128 KiB)", warren_protocol::MAX_MANIFEST_SIZE),
        format!(
            "at most **{}** entries",
            warren_protocol::directory::MAX_DIRECTORY_ENTRIES
        ),
        format!("**{}** bytes", warren_protocol::directory::MAX_LISTING_SIZE),
        format!("`{}`", warren_protocol::directory::DIRECTORY_MEDIA_TYPE),
        format!("at least **{}** bytes", chunk::SAMPLE_MIN_CHUNK),
        format!(
            "**{}** windows of **{}** bytes",
            chunk::SAMPLE_WINDOWS,
            chunk::SAMPLE_WINDOW
        ),
    ] {
        assert!(
            STORAGE_MD.contains(&fact),
            "spec/storage.md should say {fact:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Generator.

fn annotate(bytes: &[u8]) -> String {
    let mut out = String::new();
    let rest = annotate_item(bytes, 0, &mut out);
    assert!(rest.is_empty(), "trailing bytes");
    out
}

fn line(out: &mut String, depth: usize, hex_part: &str, comment: &str) {
    let code = format!("{}{}", "   ".repeat(depth), hex_part);
    if comment.is_empty() {
        out.push_str(&code);
    } else {
        out.push_str(&format!("{code:<48} # {comment}"));
    }
    out.push('\n');
}

fn annotate_item<'a>(bytes: &'a [u8], depth: usize, out: &mut String) -> &'a [u8] {
    let ib = bytes[0];
    let (major, ai) = (ib >> 5, ib & 0x1f);
    let (arg, head_len) = match ai {
        0..=23 => (u64::from(ai), 1),
        24 => (u64::from(bytes[1]), 2),
        25 => (u64::from(u16::from_be_bytes([bytes[1], bytes[2]])), 3),
        26 => (
            u64::from(u32::from_be_bytes(bytes[1..5].try_into().unwrap())),
            5,
        ),
        27 => (u64::from_be_bytes(bytes[1..9].try_into().unwrap()), 9),
        _ => panic!("indefinite or reserved length"),
    };
    let head = hex::encode(&bytes[..head_len]);
    let rest = &bytes[head_len..];
    let n = arg as usize;
    match major {
        0 => {
            line(out, depth, &head, &format!("{arg}"));
            rest
        }
        2 | 3 => {
            let (content, rest) = rest.split_at(n);
            if major == 3 {
                let text = std::str::from_utf8(content).unwrap();
                line(
                    out,
                    depth,
                    &format!("{head} {}", hex::encode(content)),
                    &format!("{text:?}"),
                );
            } else if n <= 16 {
                line(
                    out,
                    depth,
                    &format!("{head} {}", hex::encode(content)),
                    &format!("bytes({n})"),
                );
            } else {
                let what = if n == 36 {
                    match ContentId::from_bytes(content) {
                        Ok(id) => format!("bytes(36): {id}"),
                        Err(_) => "bytes(36): not a warren content id".into(),
                    }
                } else {
                    format!("bytes({n})")
                };
                line(out, depth, &head, &what);
                for chunk in content.chunks(18) {
                    line(out, depth + 1, &hex::encode(chunk), "");
                }
            }
            rest
        }
        4 => {
            line(out, depth, &head, &format!("array({n})"));
            (0..n).fold(rest, |r, _| annotate_item(r, depth + 1, out))
        }
        5 => {
            line(out, depth, &head, &format!("map({n})"));
            (0..2 * n).fold(rest, |r, _| annotate_item(r, depth + 1, out))
        }
        7 if ib == 0xf6 => {
            line(out, depth, &head, "null");
            rest
        }
        _ => panic!("unexpected CBOR item {ib:#04x}"),
    }
}

fn block(name: &str, error: Option<&str>, body: &str) {
    match error {
        None => println!("<!-- vector: {name} -->"),
        Some(kind) => println!("<!-- vector: {name} error: {kind} -->"),
    }
    println!("```hex\n{body}```\n");
}

fn plain(bytes: &[u8]) -> String {
    bytes.chunks(32).map(|c| hex::encode(c) + "\n").collect()
}

/// `bytes` with every occurrence of `from` replaced by `to` (which must occur).
fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let (h, f, t) = (hex::encode(bytes), hex::encode(from), hex::encode(to));
    assert!(h.contains(&f), "{f} not found");
    hex::decode(h.replace(&f, &t)).unwrap()
}

#[test]
#[ignore = "generator: prints the vector blocks for spec/storage.md"]
fn print_vectors() {
    let (_dir, store, ids) = put_all();
    println!("| input | bytes | file id |\n|---|---|---|");
    for (name, data, _) in files() {
        println!("| {name} | {} | `{}` |", data.len(), ids[name]);
    }
    println!();
    let hello = chunk_block(b"hello\n");
    println!(
        "chunk id of hello: {}",
        ContentId::of_block(Codec::Raw, &hello)
    );
    block("block-hello", None, &plain(&hello));
    block(
        "cid-hello-chunk",
        None,
        &plain(&ContentId::of_block(Codec::Raw, &hello).to_bytes()),
    );
    let pat = chunk_block(&pattern(CHUNK_SIZE));
    println!(
        "pattern chunk: {} bytes, id {}",
        pat.len(),
        ContentId::of_block(Codec::Raw, &pat)
    );
    block("block-pattern", None, &plain(&pat));
    for name in ["empty", "hello", "hello-named", "pattern-1mib-plus-1"] {
        let bytes = store.get_block(&ids[name]).unwrap();
        block(&format!("manifest-{name}"), None, &annotate(&bytes));
    }

    let (dir, empty) = put_dir(&store, &ids);
    println!("| dir-hello | `{dir}` |\n| dir-empty | `{empty}` |");
    let l = listing(&store, &dir);
    block("listing-dir-hello", None, &annotate(&l));
    block(
        "manifest-dir-hello",
        None,
        &annotate(&store.get_block(&dir).unwrap()),
    );
    block(
        "listing-dir-empty",
        None,
        &annotate(&listing(&store, &empty)),
    );
    block(
        "invalid-listing-dotdot",
        Some("InvalidField"),
        &annotate(&replace(&l, b"\x65empty", b"\x62..")),
    );
    block(
        "invalid-listing-slash",
        Some("InvalidField"),
        &annotate(&replace(&l, b"\x65empty", b"\x65/etcx")),
    );
    block(
        "invalid-listing-duplicate",
        Some("InvalidField"),
        &annotate(&replace(&l, b"\x69hello.txt", b"\x65empty")),
    );
    block(
        "invalid-listing-unsorted",
        Some("InvalidField"),
        &annotate(&replace(&l, b"\x65empty", b"\x65zzzzz")),
    );
    block(
        "invalid-manifest-dir-named",
        Some("InvalidField"),
        &annotate(&replace(
            &store.get_block(&dir).unwrap(),
            b"\x64name\xf6",
            b"\x64name\x61d",
        )),
    );

    let m = store.get_block(&ids["hello"]).unwrap();
    block(
        "invalid-manifest-version-3",
        Some("UnsupportedVersion"),
        &annotate(&replace(&m, b"\x67version\x01", b"\x67version\x03")),
    );
    let mut trailing = m.clone();
    trailing.push(0xf6);
    block(
        "invalid-manifest-trailing-byte",
        Some("TrailingBytes"),
        &plain(&trailing),
    );
    block(
        "invalid-manifest-non-minimal-integer",
        Some("NonCanonical"),
        &annotate(&replace(&m, b"\x65depth\x00", b"\x65depth\x18\x00")),
    );
    block(
        "invalid-manifest-size-mismatch",
        Some("InvalidField"),
        &annotate(&replace(&m, b"\x64size\x06", b"\x64size\x07")),
    );
    block(
        "invalid-manifest-chunk-with-cbor-codec",
        Some("InvalidField"),
        &annotate(&replace(&m, b"\x58\x24\x01\x55", b"\x58\x24\x01\x51")),
    );
    block(
        "invalid-manifest-sha2-chunk-id",
        Some("Malformed"),
        &annotate(&replace(
            &m,
            b"\x58\x24\x01\x55\x1e",
            b"\x58\x24\x01\x55\x12",
        )),
    );
    block(
        "invalid-manifest-truncated",
        Some("Malformed"),
        &plain(&m[..m.len() - 1]),
    );

    let cid = ContentId::of_block(Codec::Raw, &hello).to_bytes();
    block(
        "invalid-cid-sha2-256",
        Some("UnsupportedHash"),
        &plain(&replace(&cid, b"\x01\x55\x1e", b"\x01\x55\x12")),
    );
    block(
        "invalid-cid-dag-pb",
        Some("UnsupportedCodec"),
        &plain(&replace(&cid, b"\x01\x55\x1e", b"\x01\x70\x1e")),
    );
    let mut long = cid.clone();
    long.push(0);
    block(
        "invalid-cid-trailing-byte",
        Some("InvalidCid"),
        &plain(&long),
    );
}
