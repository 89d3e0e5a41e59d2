//! `Ctime::local()` follows daylight-saving changes, in a multi-threaded
//! program, in the zone `TZ` names, and refuses a zone it cannot find.
//!
//! The local zone is process-wide, so each case runs this test binary again
//! as a child process with `TZ` set (the child prints the stamps of the
//! instants it is given). The stamps are checked against the known
//! daylight-saving changes of 2026 and, when `python3` is there, against
//! Python's `time.ctime()` in the same zone.
//!
//! Needs the tz database (`/usr/share/zoneinfo`, or `TZDIR`) for the named
//! zones, and `python3` for the comparison: when either is missing the case
//! fails under CI (`CI=true`) and prints `SKIPPED ...` elsewhere. The POSIX
//! rule and the unknown zone cases need neither.
//!
//! This file is its own harness (`harness = false`): a child must not run
//! the tests again.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, SystemTime};

use common::{missing_tool, python3};
use stamp_echo::stamp::{Ctime, Stamp};

/// Set (to a comma-separated list of Unix seconds) in the child's environment.
const CHILD: &str = "STAMP_ECHO_LOCAL_TIME_CHILD";
/// How many threads the child stamps from at once.
const THREADS: usize = 8;

// Daylight-saving changes of 2026, in Unix seconds (UTC):
/// New York: 2026-03-08 07:00 UTC, 02:00 EST becomes 03:00 EDT.
const NY_SPRING: i64 = 1_772_953_200;
/// New York: 2026-11-01 06:00 UTC, 02:00 EDT becomes 01:00 EST.
const NY_AUTUMN: i64 = 1_793_512_800;
/// Berlin (all of the EU): 2026-03-29 01:00 UTC, 02:00 CET becomes 03:00 CEST.
const EU_SPRING: i64 = 1_774_746_000;
/// Berlin: 2026-10-25 01:00 UTC, 03:00 CEST becomes 02:00 CET.
const EU_AUTUMN: i64 = 1_792_890_000;
/// The tutorial's instant, 2013-02-03 10:00:18 UTC (winter on both sides).
const TUTORIAL: i64 = 1_359_885_618;
/// 2100-07-02 12:00 UTC: past 2037, where zone files end in a rule.
const SUMMER_2100: i64 = 4_118_212_800;

const NEW_YORK: &[(i64, &str)] = &[
    (TUTORIAL, "Sun Feb  3 05:00:18 2013"),
    (NY_SPRING - 1, "Sun Mar  8 01:59:59 2026"),
    (NY_SPRING, "Sun Mar  8 03:00:00 2026"),
    (NY_AUTUMN - 1, "Sun Nov  1 01:59:59 2026"),
    (NY_AUTUMN, "Sun Nov  1 01:00:00 2026"),
    (SUMMER_2100, "Fri Jul  2 08:00:00 2100"),
];

const BERLIN: &[(i64, &str)] = &[
    (TUTORIAL, "Sun Feb  3 11:00:18 2013"),
    (EU_SPRING - 1, "Sun Mar 29 01:59:59 2026"),
    (EU_SPRING, "Sun Mar 29 03:00:00 2026"),
    (EU_AUTUMN - 1, "Sun Oct 25 02:59:59 2026"),
    (EU_AUTUMN, "Sun Oct 25 02:00:00 2026"),
    (SUMMER_2100, "Fri Jul  2 14:00:00 2100"),
];

fn main() {
    if let Some(instants) = std::env::var_os(CHILD) {
        child(&instants.to_string_lossy());
        return;
    }
    if cfg!(not(unix)) {
        println!("SKIPPED local_time: `TZ` selects the zone on Unix only");
        return;
    }
    let cases: [(&str, fn()); 5] = [
        ("new_york_follows_daylight_saving", new_york_follows_daylight_saving),
        ("berlin_follows_daylight_saving", berlin_follows_daylight_saving),
        ("a_posix_rule_follows_daylight_saving", a_posix_rule_follows_daylight_saving),
        ("an_unknown_zone_is_an_error_not_utc", an_unknown_zone_is_an_error_not_utc),
        ("a_corrupt_zone_file_is_an_error_not_utc", a_corrupt_zone_file_is_an_error_not_utc),
    ];
    println!("\nrunning {} tests", cases.len());
    for (name, case) in cases {
        case();
        println!("test {name} ... ok");
    }
    println!("\ntest result: ok. {} passed\n", cases.len());
}

/// The child: stamps each instant with `Ctime::local()` made while another
/// thread runs, from [`THREADS`] threads at once, and prints `SECS\tSTAMP`
/// lines; or `ERROR\tREASON` if there is no local time.
fn child(instants: &str) {
    let instants: Vec<i64> =
        instants.split(',').map(|s| s.parse().unwrap_or_else(|_| panic!("bad instant {s:?}"))).collect();
    // A second thread exists before the zone is read: the program is
    // multi-threaded, as every server is.
    let (stop, parked) = std::sync::mpsc::channel::<()>();
    let other = thread::spawn(move || parked.recv());
    let ctime = match Ctime::local() {
        Ok(ctime) => ctime,
        Err(err) => {
            println!("ERROR\t{err}");
            return;
        }
    };
    let stamps = || -> Vec<String> {
        instants
            .iter()
            .map(|&secs| {
                let mut text = String::new();
                ctime.write_stamp(at(secs), &mut text);
                text
            })
            .collect()
    };
    let first = stamps();
    thread::scope(|scope| {
        let threads: Vec<_> =
            (0..THREADS).map(|_| scope.spawn(|| (0..100).map(|_| stamps()).collect::<Vec<_>>())).collect();
        for handle in threads {
            for round in handle.join().expect("a stamping thread") {
                assert_eq!(round, first, "every thread stamps the same text");
            }
        }
    });
    drop(stop);
    let _ = other.join();
    for (secs, text) in instants.iter().zip(first) {
        println!("{secs}\t{text}");
    }
}

fn at(secs: i64) -> SystemTime {
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Runs the child with `TZ=tz` and returns its output lines.
fn run_child(tz: &str, instants: &[i64]) -> Vec<String> {
    let list: Vec<String> = instants.iter().map(i64::to_string).collect();
    let exe = std::env::current_exe().expect("the test binary's path");
    let output =
        Command::new(exe).env(CHILD, list.join(",")).env("TZ", tz).output().expect("run the test binary as a child");
    assert!(output.status.success(), "the child failed with TZ={tz}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output").lines().map(str::to_owned).collect()
}

/// Stamps `expected`'s instants in `tz` and compares with the known text,
/// and with Python's `time.ctime()` when python3 is there.
fn check_zone(test: &str, tz: &str, expected: &[(i64, &str)]) {
    let instants: Vec<i64> = expected.iter().map(|&(secs, _)| secs).collect();
    let lines = run_child(tz, &instants);
    let want: Vec<String> = expected.iter().map(|(secs, text)| format!("{secs}\t{text}")).collect();
    assert_eq!(lines, want, "TZ={tz}");

    let Some(python) = python3(test) else { return };
    let list: Vec<String> = instants.iter().map(i64::to_string).collect();
    let output = Command::new(python)
        .args(["-c", "import sys, time\nfor a in sys.argv[1:]: print(a + '\\t' + time.ctime(int(a)))"])
        .args(&list)
        .env("TZ", tz)
        .output()
        .expect("run python3");
    assert!(output.status.success(), "python3 failed: {}", String::from_utf8_lossy(&output.stderr));
    let python_lines: Vec<String> =
        String::from_utf8(output.stdout).expect("UTF-8 output").lines().map(str::to_owned).collect();
    assert_eq!(lines, python_lines, "TZ={tz}: ours, then Python's time.ctime()");
}

/// The tz database directory, if it holds `zone`; else the test is failed
/// (under CI) or skipped with a notice.
fn zone_file(test: &str, zone: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("TZDIR").map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
    let path = dir.join(zone);
    if path.is_file() {
        Some(path)
    } else {
        missing_tool(test, &format!("the tz database has no {} (install tzdata)", path.display()));
        None
    }
}

fn new_york_follows_daylight_saving() {
    let test = "new_york_follows_daylight_saving";
    if zone_file(test, "America/New_York").is_some() {
        check_zone(test, "America/New_York", NEW_YORK);
        check_zone(test, ":America/New_York", NEW_YORK); // the leading `:` form
    }
}

fn berlin_follows_daylight_saving() {
    let test = "berlin_follows_daylight_saving";
    if zone_file(test, "Europe/Berlin").is_some() {
        check_zone(test, "Europe/Berlin", BERLIN);
    }
}

/// A POSIX `TZ` rule needs no zone file: Berlin's rule gives Berlin's times.
fn a_posix_rule_follows_daylight_saving() {
    check_zone("a_posix_rule_follows_daylight_saving", "CET-1CEST,M3.5.0,M10.5.0/3", BERLIN);
}

/// The C library would stamp UTC for a zone it cannot find, or a file that
/// is not a zone file; `Ctime::local()` says so instead.
fn an_unknown_zone_is_an_error_not_utc() {
    let not_a_zone_file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for tz in ["Nowhere/Atlantis", not_a_zone_file] {
        let lines = run_child(tz, &[TUTORIAL]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let reason =
            lines[0].strip_prefix("ERROR\t").unwrap_or_else(|| panic!("TZ={tz}: expected an error, got {lines:?}"));
        assert!(reason.contains(&format!("TZ={tz:?}")) && reason.contains("no zone file"), "{reason}");
    }
}

/// A file that starts like a zone file (`TZif`) but is cut short or
/// garbled: the C library would stamp UTC (Python's `time.ctime()` does,
/// for Berlin cut at 1000 bytes); `Ctime::local()` says it is corrupt.
fn a_corrupt_zone_file_is_an_error_not_utc() {
    let dir = std::env::temp_dir().join(format!("stamp-echo-zones-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).expect("a temporary directory");
    let mut files =
        vec![("header-only", [&b"TZif2"[..], &[0; 39]].concat()), ("garbage", [&b"TZif"[..], &[0xff; 200]].concat())];
    // A real zone file cut short, when the tz database is here (it is not needed).
    let berlin = std::env::var_os("TZDIR").map_or_else(|| PathBuf::from("/usr/share/zoneinfo"), PathBuf::from);
    if let Ok(bytes) = std::fs::read(berlin.join("Europe/Berlin")) {
        files.push(("berlin-cut", bytes[..bytes.len().min(1000)].to_vec()));
    }
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write the zone file");
        let tz = path.to_str().expect("UTF-8 path");
        let lines = run_child(tz, &[TUTORIAL]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let reason =
            lines[0].strip_prefix("ERROR\t").unwrap_or_else(|| panic!("TZ={tz}: expected an error, got {lines:?}"));
        assert!(reason.contains(&format!("the zone file {tz} is corrupt")), "{reason}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
