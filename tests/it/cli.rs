//! The `fnhost` command line against a running host: human output, `--json`, exit codes and
//! error messages.

use std::process::{Command, Output};

use crate::common::{TestHost, wasm_path};
use serde_json::Value;

fn fnhost(host: &TestHost, args: &[&str]) -> Output {
    host.fnhost(args)
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "fnhost failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// deploy (with progress), publish, versions, functions --json, invoke, config, delete.
#[tokio::test]
async fn deploy_publish_invoke_and_list_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let hello = wasm_path("hello");
    let hello = hello.to_str().unwrap();

    let output = fnhost(
        &host,
        &[
            "deploy",
            "hello",
            hello,
            "--env",
            "GREETING=Hej",
            "--timeout",
            "2s",
        ],
    );
    let out = stdout(&output);
    assert!(out.contains("deployed hello $LATEST: sha256:"), "{out}");
    let progress = String::from_utf8_lossy(&output.stderr);
    assert!(
        progress.contains("validated") && progress.contains("linked"),
        "{progress}"
    );

    let out = stdout(&fnhost(
        &host,
        &["publish", "hello", "--description", "first"],
    ));
    assert!(out.contains("published hello version 1"), "{out}");
    let out = stdout(&fnhost(&host, &["publish", "hello"]));
    assert!(out.contains("identical to version 1"), "{out}");

    let out = stdout(&fnhost(&host, &["versions", "hello"]));
    let row = out.lines().nth(1).unwrap();
    assert!(
        row.starts_with("1 ") && row.contains("2000ms") && row.contains("first"),
        "{out}"
    );

    let listed: Value =
        serde_json::from_str(&stdout(&fnhost(&host, &["functions", "--json"]))).unwrap();
    assert_eq!(listed["functions"][0]["name"], "hello");
    assert_eq!(listed["functions"][0]["newest_version"], 1);

    assert_eq!(
        stdout(&fnhost(&host, &["invoke", "hello"])),
        "Hej, world!\n"
    );
    let out = stdout(&fnhost(&host, &["invoke", "hello@1", "-i"]));
    assert!(out.contains("fnhost-version: 1"), "{out}");

    let out = stdout(&fnhost(
        &host,
        &["config", "hello", "--env", "GREETING=Hallo"],
    ));
    assert!(out.contains("GREETING=Hallo"), "{out}");
    assert_eq!(
        stdout(&fnhost(&host, &["invoke", "hello@latest"])),
        "Hallo, world!\n"
    );

    let out = stdout(&fnhost(
        &host,
        &[
            "deploy",
            "echo",
            wasm_path("echo").to_str().unwrap(),
            "--publish",
            "--json",
        ],
    ));
    let deployed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deployed["published"]["version"]["version"], 1);
    let out = stdout(&fnhost(
        &host,
        &["invoke", "echo", "--data", "ping", "--path", "/p?q=1"],
    ));
    assert_eq!(out, "ping");

    stdout(&fnhost(&host, &["delete", "echo"]));
    let listed: Value =
        serde_json::from_str(&stdout(&fnhost(&host, &["functions", "--json"]))).unwrap();
    assert_eq!(listed["functions"].as_array().unwrap().len(), 1);
}

/// The gray-release commands: deploy --traffic, traffic, rollback, promote, alias set/list.
#[tokio::test]
async fn gray_release_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let hello = wasm_path("hello");
    let hello = hello.to_str().unwrap();
    stdout(&fnhost(
        &host,
        &["deploy", "shop", hello, "--env", "GREETING=v1", "--publish"],
    ));

    let out = stdout(&fnhost(
        &host,
        &[
            "deploy",
            "shop",
            hello,
            "--env",
            "GREETING=v2",
            "--traffic",
            "5",
        ],
    ));
    assert!(
        out.contains("$DEFAULT sends 5% of shop's traffic to $LATEST"),
        "{out}"
    );
    let out = stdout(&fnhost(
        &host,
        &["traffic", "shop", "25.5", "--sticky-header", "user-id"],
    ));
    assert_eq!(out.trim(), "shop $DEFAULT: 1: 74.5%, $LATEST: 25.5%");
    let out = stdout(&fnhost(&host, &["rollback", "shop"]));
    assert!(out.contains("$LATEST: 0%"), "{out}");
    let out = stdout(&fnhost(&host, &["promote", "shop", "--description", "v2"]));
    assert!(
        out.starts_with("shop published version 2; $DEFAULT: 2: 100%"),
        "{out}"
    );
    assert_eq!(stdout(&fnhost(&host, &["invoke", "shop"])), "v2, world!\n");

    let out = stdout(&fnhost(
        &host,
        &[
            "alias",
            "set",
            "shop",
            "prod",
            "1=90",
            "2=10",
            "--sticky-header",
            "user-id",
            "--rule",
            "app-version^=2.@2",
        ],
    ));
    assert_eq!(out.trim(), "shop@prod: 1: 90%, 2: 10%");
    let out = stdout(&fnhost(&host, &["alias", "list", "shop"]));
    let prod = out.lines().find(|l| l.starts_with("prod")).unwrap();
    assert!(
        prod.contains("user-id") && prod.contains("app-version^=2. -> 2"),
        "{out}"
    );
    let out = stdout(&fnhost(
        &host,
        &["invoke", "shop@prod", "-H", "app-version=2.0"],
    ));
    assert_eq!(out, "v2, world!\n");

    let output = fnhost(&host, &["alias", "set", "shop", "prod", "1=90", "2=9"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("sum to 99%"));
    let output = fnhost(&host, &["delete", "shop", "--version", "1"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("used by alias prod"));
    stdout(&fnhost(&host, &["alias", "delete", "shop", "prod"]));
    stdout(&fnhost(&host, &["delete", "shop", "--version", "1"]));
}

/// Limit flags on deploy and config, and `fnhost logs` showing what a function printed.
#[tokio::test]
async fn limits_and_logs_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let hostile = wasm_path("hostile");
    stdout(&fnhost(
        &host,
        &[
            "deploy",
            "loud",
            hostile.to_str().unwrap(),
            "--allow-outbound",
            "http://127.0.0.1:9",
            "--cpu-budget",
            "50ms",
            "--max-concurrency",
            "7",
            "--max-request-body",
            "1Ki",
        ],
    ));
    let out = stdout(&fnhost(&host, &["config", "loud"]));
    for expected in [
        "cpu budget: 50ms",
        "max concurrency: 7",
        "request 1024 bytes",
        "outbound HTTP: http://127.0.0.1:9",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    let out = stdout(&fnhost(
        &host,
        &["config", "loud", "--deny-outbound", "--cpu-budget", "0ms"],
    ));
    assert!(
        out.contains("outbound HTTP: denied") && out.contains("cpu budget: none"),
        "{out}"
    );

    let output = fnhost(&host, &["config", "loud", "--allow-outbound", "ftp://x"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("scheme://host[:port]"));

    // Read the whole answer: a client that hangs up early makes the function's last write
    // fail, and its panic message would be logged too.
    host.http
        .get(format!("{}/loud/flood?kib=2", host.data_url))
        .header("x-request-id", "cli-logs-1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let out = stdout(&fnhost(&host, &["logs", "loud"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].contains(" vlatest [cli-logs-1] xxxx"), "{out}");
    assert_eq!(
        stdout(&fnhost(&host, &["logs", "loud", "--version", "1"])),
        ""
    );
}

/// Not found exits 1; other failures exit 2; both say what went wrong on stderr.
#[tokio::test]
async fn errors_have_exit_codes_and_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;

    let output = fnhost(&host, &["versions", "nope"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim(), "error: function \"nope\" not found");

    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"definitely not wasm").unwrap();
    let output = fnhost(&host, &["deploy", "bad", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: not a WebAssembly binary"),
        "{stderr}"
    );

    let big = dir.path().join("big.wasm");
    std::fs::write(&big, vec![0u8; 65 << 20]).unwrap();
    let output = fnhost(&host, &["deploy", "big", big.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("larger than the host's upload limit of 64.0 MiB"),
        "{stderr}"
    );

    let output = fnhost(&host, &["deploy", "x", "/no/such/file.wasm"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/no/such/file.wasm"));

    let output = Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .args(["functions", "--admin", "http://127.0.0.1:9", "--token", "t"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is `fnhost serve` running?"), "{stderr}");

    let output = Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .args(["functions", "--admin", &host.admin_url, "--token", "wrong"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("admin token"));
}

/// `--help` explains every command.
#[test]
fn help_lists_and_explains_every_command() {
    use clap::CommandFactory;
    let output = Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("Exit codes"));
    let cli = fnhost::cli::Cli::command();
    let commands: Vec<&clap::Command> = cli.get_subcommands().collect();
    assert!(commands.len() >= 20, "{} commands", commands.len());
    let mut missing = Vec::new();
    for command in commands {
        let name = command.get_name();
        let about = command
            .get_about()
            .unwrap_or_else(|| panic!("{name} has no description"))
            .to_string();
        // Listed on a line of its own, with its description.
        assert!(
            help.lines().any(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some(name) && line.contains(about.trim_end_matches('.'))
            }),
            "--help does not list {name} with {about:?}:\n{help}"
        );
        explained(command, name, &mut missing);
    }
    assert!(missing.is_empty(), "unexplained: {missing:#?}");
    let output = Command::new(env!("CARGO_BIN_EXE_fnhost"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("--data-dir") && help.contains("--max-upload"));
}

/// Every visible argument of `command` and of its subcommands has help text.
fn explained(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
    for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
        if arg
            .get_help()
            .is_none_or(|h| h.to_string().trim().is_empty())
        {
            missing.push(format!("fnhost {path}: argument {}", arg.get_id()));
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_about().is_none() {
            missing.push(format!("fnhost {path} {}", sub.get_name()));
        }
        explained(sub, &format!("{path} {}", sub.get_name()), missing);
    }
}

/// `fnhost rollout --wait` follows a rollout to its end: exit 0 when it is promoted, exit 2
/// with the reason when it rolls back; `rollout status` and `alias history` tell the story;
/// object, trigger and events commands work end to end.
#[tokio::test]
async fn rollouts_objects_and_events_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let hostile = wasm_path("hostile");
    let hostile = hostile.to_str().unwrap();
    stdout(&fnhost(&host, &["deploy", "shop", hostile, "--publish"]));
    stdout(&fnhost(
        &host,
        &["deploy", "shop", hostile, "--env", "FAIL_PERCENT=50"],
    ));

    // Traffic while the CLI waits.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, http, url) = (
            stop.clone(),
            host.http.clone(),
            format!("{}/shop/", host.data_url),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = http.get(&url).send().await;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    let args = [
        "rollout",
        "shop",
        "--to",
        "latest",
        "--steps",
        "30,100",
        "--interval",
        "1s",
        "--min-requests",
        "10",
        "--max-error-rate",
        "5%",
        "--wait",
    ];
    let admin_url = host.admin_url.clone();
    let data_dir = host.data_dir.clone();
    let rolled_back = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_fnhost"))
            .args(args)
            .env("FNHOST_ADMIN_URL", admin_url)
            .env("FNHOST_DATA_DIR", data_dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    assert_eq!(rolled_back.status.code(), Some(2));
    let printed = String::from_utf8_lossy(&rolled_back.stdout);
    assert!(printed.contains("started: step 1 sends 30%"), "{printed}");
    let error = String::from_utf8_lossy(&rolled_back.stderr);
    assert!(
        error.contains("did not succeed: rolled back at step 1"),
        "{error}"
    );

    let status = stdout(&fnhost(&host, &["rollout", "status", "shop"]));
    assert!(
        status.contains("rolled_back at 0%") && status.contains("BREACHED"),
        "{status}"
    );
    let history = stdout(&fnhost(&host, &["alias", "history", "shop", "$DEFAULT"]));
    assert!(
        history.contains("rollout") && history.contains("1:100%"),
        "{history}"
    );
    assert_eq!(
        fnhost(&host, &["rollout", "resume", "shop"]).status.code(),
        Some(2),
        "a rolled-back rollout cannot resume"
    );

    // Objects, triggers and events.
    stdout(&fnhost(&host, &["deploy", "copy", hostile]));
    let added = stdout(&fnhost(
        &host,
        &[
            "trigger",
            "add",
            "copy",
            "--bucket",
            "inbox",
            "--suffix",
            ".txt",
            "--output-bucket",
            "outbox",
        ],
    ));
    assert!(
        added.contains("objects in inbox/*.txt -> outbox"),
        "{added}"
    );
    let file = dir.path().join("note.txt");
    std::fs::write(&file, "hello").unwrap();
    let put = stdout(&fnhost(
        &host,
        &[
            "object",
            "put",
            "inbox",
            "notes/a b.txt",
            file.to_str().unwrap(),
        ],
    ));
    assert!(
        put.contains("stored inbox/notes/a b.txt (5 bytes); queued event evt-"),
        "{put}"
    );
    let started = std::time::Instant::now();
    loop {
        let listing = stdout(&fnhost(&host, &["object", "ls", "outbox"]));
        if listing.contains("notes/a b.txt") {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{listing}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The output is written before the event is marked delivered (at least once): wait
    // for the mark too.
    let started = std::time::Instant::now();
    loop {
        let events = stdout(&fnhost(&host, &["events", "copy"]));
        if events.contains("delivered") {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{events}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let fetched = dir.path().join("out.txt");
    stdout(&fnhost(
        &host,
        &[
            "object",
            "get",
            "inbox",
            "notes/a b.txt",
            "-o",
            fetched.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_to_string(&fetched).unwrap(), "hello");
    let missing = fnhost(&host, &["object", "get", "inbox", "nope.txt"]);
    assert_eq!(missing.status.code(), Some(1), "not found exits 1");
}

/// The table commands render what the API answers (read through the shared wire types):
/// traffic with a sticky header, an alias with a rule and a mirror, the history of both,
/// triggers, usage by alias, and a rollout's status; and `--json` prints the API's shape.
#[tokio::test]
async fn table_commands_render_the_api_answers() {
    let dir = tempfile::tempdir().unwrap();
    let host = TestHost::start(&dir.path().join("data")).await;
    let hello = wasm_path("hello");
    let hello = hello.to_str().unwrap();
    stdout(&fnhost(&host, &["deploy", "shop", hello, "--publish"]));
    stdout(&fnhost(&host, &["deploy", "shop", hello, "--env", "A=1"]));

    let out = stdout(&fnhost(
        &host,
        &["traffic", "shop", "12.5", "--sticky-header", "user-id"],
    ));
    assert_eq!(out, "shop $DEFAULT: 1: 87.5%, $LATEST: 12.5%\n");
    let out = stdout(&fnhost(
        &host,
        &[
            "alias",
            "set",
            "shop",
            "prod",
            "1=99.99",
            "latest=0.01",
            "--rule",
            "app-version^=2.@latest",
            "--mirror",
            "latest=20",
        ],
    ));
    assert_eq!(out, "shop@prod: 1: 99.99%, $LATEST: 0.01%\n");
    let out = stdout(&fnhost(&host, &["alias", "list", "shop"]));
    let prod = out.lines().find(|l| l.starts_with("prod")).unwrap();
    assert!(
        prod.contains("(mirror $LATEST=20%)") && prod.contains("app-version^=2. -> $LATEST"),
        "{out}"
    );
    let default = out.lines().find(|l| l.starts_with("$DEFAULT")).unwrap();
    assert!(default.contains("user-id"), "{out}");

    let out = stdout(&fnhost(&host, &["alias", "history", "shop"]));
    let newest = out.lines().nth(1).unwrap();
    assert!(
        newest.contains("prod")
            && newest.contains("(none)")
            && newest.contains("1:99.99% latest:0.01%"),
        "{out}"
    );
    assert!(out.contains("1:87.5% latest:12.5%"), "{out}");

    let out = stdout(&fnhost(
        &host,
        &[
            "trigger", "add", "shop", "--bucket", "uploads", "--prefix", "in/",
        ],
    ));
    assert_eq!(out, "added trigger 1: objects in uploads/in/*\n");
    let out = stdout(&fnhost(&host, &["trigger", "list", "shop"]));
    assert!(out.contains("objects in uploads/in/*  $DEFAULT"), "{out}");

    for _ in 0..3 {
        let response = reqwest::get(format!("{}/shop/", host.data_url))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let out = stdout(&fnhost(&host, &["usage", "shop", "--by", "alias"]));
    let row = out.lines().nth(1).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..4], ["shop", "$DEFAULT", "3", "0"], "{out}");

    let out = stdout(&fnhost(
        &host,
        &[
            "rollout",
            "shop",
            "--to",
            "1",
            "--alias",
            "prod",
            "--steps",
            "50,100",
            "--interval",
            "60s",
        ],
    ));
    assert!(
        out.starts_with("started: step 1 sends 50% to version 1"),
        "{out}"
    );
    let out = stdout(&fnhost(&host, &["rollout", "status", "shop"]));
    assert!(
        out.starts_with("rollout of shop version 1 through prod: running at 50% (step 1 of 2)"),
        "{out}"
    );
    assert!(out.contains("stable version: $LATEST"), "{out}");
    let status: Value = serde_json::from_str(&stdout(&fnhost(
        &host,
        &["rollout", "abort", "shop", "--json"],
    )))
    .unwrap();
    assert_eq!(status["phase"], "aborted");
    assert_eq!(status["current_percent"], 0.0);
    assert_eq!(status["spec"]["steps_bp"], serde_json::json!([5000, 10000]));
}

/// The operator files in `deploy/` start fnhost with flags it accepts: the Kubernetes
/// Deployment's container args and the Dockerfile's default command parse as `fnhost` does.
#[test]
fn deployment_files_start_fnhost_with_real_flags() {
    use clap::Parser;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let manifest = std::fs::read_to_string(root.join("kubernetes/fnhost.yaml")).unwrap();
    let args: Vec<String> = manifest
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .take_while(|l| l.trim_start().starts_with("- ") || l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim_start().strip_prefix("- "))
        .map(str::to_string)
        .collect();
    assert!(args.len() >= 5 && args[0] == "serve", "{args:?}");
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("a CMD line");
    let cmd: Vec<String> = serde_json::from_str(cmd).unwrap();
    for args in [args, cmd] {
        let argv = std::iter::once("fnhost".to_string()).chain(args.iter().cloned());
        if let Err(e) = fnhost::cli::Cli::try_parse_from(argv) {
            panic!("fnhost refuses {args:?}: {e}");
        }
    }
}
