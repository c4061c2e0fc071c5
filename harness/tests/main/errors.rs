//! Bad usage and bad environments map to the contract's exit codes with clear messages.

use crate::util::{run, stderr};

#[test]
fn bad_scenario_file_exits_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    let out_dir = dir.path().join("out");
    let out_dir = out_dir.to_str().unwrap();

    std::fs::write(&file, "version = 1\nrate = -3.0\n").unwrap();
    let out = run(&[
        "bench",
        "--scenario",
        file.to_str().unwrap(),
        "--out",
        out_dir,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`rate`"), "{}", stderr(&out));

    std::fs::write(&file, "version = 1\npublisherz = 3\n").unwrap();
    let out = run(&[
        "bench",
        "--scenario",
        file.to_str().unwrap(),
        "--out",
        out_dir,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("publisherz"), "{}", stderr(&out));

    std::fs::write(&file, "version = 1\n[[step]]\nat = \"1h\"\nrate = 5.0\n").unwrap();
    let out = run(&[
        "bench",
        "--scenario",
        file.to_str().unwrap(),
        "--out",
        out_dir,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`step.at`"), "{}", stderr(&out));
    assert!(
        !dir.path().join("out").exists(),
        "nothing starts before validation"
    );
}

#[test]
fn bad_flags_exit_2() {
    let out = run(&["bench", "--duration", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["bench", "--warmup", "10s", "--duration", "5s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`warmup`"), "{}", stderr(&out));
}

#[test]
fn missing_redis_server_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::util::raftbus()
        .args([
            "bench",
            "--target",
            "redis",
            "--duration",
            "2s",
            "--warmup",
            "1s",
            "--out",
        ])
        .arg(dir.path())
        .env("PATH", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("apt-get install -y redis-server"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_node_binary_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "bench",
        "--target",
        "bus",
        "--node-bin",
        "/nonexistent/raftbus-node",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("--node-bin"), "{}", stderr(&out));
}

#[test]
fn help_explains_every_flag() {
    let out = run(&["bench", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--target",
        "--nodes",
        "--rate",
        "--duration",
        "--warmup",
        "--size",
        "--channels",
        "--publishers",
        "--subscribers-per-node",
        "--mode",
        "--scenario",
        "--seed",
        "--out",
        "--node-bin",
        "--redis-persistence",
        "--redis-replicas",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}
