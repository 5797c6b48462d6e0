//! Crash safety: a process killed with SIGKILL in the middle of a large put leaves a store that
//! opens, still has every file it reported as stored, lists no partial file as pinned, and has
//! removed the interrupted put's leftovers (its temporary files: nothing of it was indexed).
//!
//! The test runs itself as the child process (selected by an environment variable), so the put
//! really is cut off at a random point by the kernel, not by a flag.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed check

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use warren_storage_mesh::{ContentId, PutOptions, Store, testdata::MixedReader};

const CHILD_ENV: &str = "WARREN_STORAGE_CRASH_CHILD";
const FIRST_FILE: u64 = 5 << 20;

#[test]
fn a_put_killed_midway_leaves_a_consistent_store() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(dir.as_ref());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_put_killed_midway_leaves_a_consistent_store",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first: Option<ContentId> = None;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // The test harness may print its own text before the child's on the same line.
        if let Some((_, cid)) = line.split_once("stored ") {
            first = Some(cid.parse().unwrap());
        } else if let Some((_, n)) = line.split_once("progress ") {
            // Well into the second put: many block files written, none committed.
            if n.parse::<u64>().unwrap() >= 100 << 20 {
                break;
            }
        }
        assert!(
            !line.contains("finished"),
            "the child was meant to be killed before the end"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(lines);
    let first = first.expect("the child reported its first file");
    let temporaries = || std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert!(temporaries() > 0, "the killed put left its temporary files");

    let store = Store::open(dir.path(), u64::MAX).expect("the store opens after a SIGKILL");
    let pins = store.pins().unwrap();
    assert_eq!(pins.len(), 1, "only the complete file is pinned: {pins:?}");
    assert_eq!(pins[0].cid, first);
    let mut out = Vec::new();
    store.get(&first, &mut out, &|_| {}).unwrap();
    let mut expected = Vec::new();
    std::io::copy(&mut MixedReader::new(FIRST_FILE, 1), &mut expected).unwrap();
    assert_eq!(out, expected);

    // The interrupted put's files went at open; nothing of it is listed, so gc finds nothing.
    assert_eq!(temporaries(), 0, "temporaries removed at open");
    let before = store.usage().unwrap();
    assert_eq!(before.blocks, pins[0].blocks, "{before:?}");
    let report = store.gc().unwrap();
    let after = store.usage().unwrap();
    assert_eq!(report.blocks_removed, 0, "{report:?}");
    assert_eq!(
        after.stored_bytes, pins[0].stored_bytes,
        "{before:?} {after:?}"
    );
    assert_eq!(after.blocks, pins[0].blocks);
    let mut again = Vec::new();
    store.get(&first, &mut again, &|_| {}).unwrap();
    assert_eq!(again, expected);

    // And the store takes new files.
    let file = store
        .put(&b"after the crash"[..], &PutOptions::default(), &|_| {})
        .unwrap();
    assert_eq!(store.pins().unwrap().len(), 2);
    assert_eq!(file.size, 15);
}

/// Puts a small file, reports it, then starts a 4 GiB put reporting progress until killed.
fn child(dir: &std::path::Path) {
    let store = Store::open(dir, u64::MAX).unwrap();
    let first = store
        .put(
            MixedReader::new(FIRST_FILE, 1),
            &PutOptions::default(),
            &|_| {},
        )
        .unwrap();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "stored {}", first.cid).unwrap();
    stdout.flush().unwrap();
    drop(stdout);
    let progress = |n: u64| {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "progress {n}");
        let _ = stdout.flush();
    };
    store
        .put(
            MixedReader::new(4 << 30, 2),
            &PutOptions::default(),
            &progress,
        )
        .unwrap();
    println!("finished");
}
