//! Function isolation: each instance has its own working folder and `TMPDIR`, runs under
//! resource limits, and (when the tests run as root, as CI does) as a user of its own that can
//! read neither another function's code nor its environment; a memory hog or a fork bomb
//! fails its own invocation while other functions keep answering.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{Fixture, eventually, failed, fixture, function, request, shared_dir, succeeded};
use nimbus_core::FunctionConfig;
use serde_json::json;

/// Handlers of the isolation tests, in `probe.py`.
const PROBE_APP: &str = r#"
import os, resource, time, urllib.request

def whoami(event, context):
    if event.get("dir"):
        # Hold the instance busy until the test has started as many as it wants.
        folder = event["dir"]
        open(os.path.join(folder, "started-%d" % os.getpid()), "w").close()
        while not os.path.exists(os.path.join(folder, "release")):
            time.sleep(0.01)
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "tmpdir": os.environ["TMPDIR"],
        "home": os.environ["HOME"],
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "api": os.environ["AWS_LAMBDA_RUNTIME_API"],
        "env": sorted(os.environ),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
        "data": resource.getrlimit(resource.RLIMIT_DATA),
        "core": resource.getrlimit(resource.RLIMIT_CORE),
    }

def read(path):
    """What reading `path` (a folder is listed) gives: "ok" or the error's name."""
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read()
        return "ok"
    except OSError as error:
        return type(error).__name__

def take_event(address):
    """What asking another instance's Runtime API for its next event gives."""
    try:
        url = "http://%s/2018-06-01/runtime/invocation/next" % address
        urllib.request.urlopen(url, timeout=5).read()
        return "ok"
    except Exception as error:
        return type(error).__name__

def probe(event, context):
    seen = {path: read(path) for path in event["paths"]}
    for address in event.get("apis", []):
        seen[address] = take_event(address)
    return seen

def hog(event, context):
    chunks = []
    for _ in range(event["mb"]):
        chunks.append(bytearray(1024 * 1024))
    return len(chunks)

def bomb(event, context):
    with open(os.path.join(event["dir"], "bomb-uid.tmp"), "w") as f:
        f.write(str(os.getuid()))
    os.rename(os.path.join(event["dir"], "bomb-uid.tmp"), os.path.join(event["dir"], "bomb-uid"))
    while True:
        try:
            pid = os.fork()
        except OSError:
            # Out of processes: wait to be killed at the timeout.
            time.sleep(300)
            continue
        if pid == 0:
            # Leave the instance's process group, as a fork bomb may.
            os.setsid()
            time.sleep(300)
            os._exit(0)
"#;

/// A Node.js handler that keeps `mb` megabytes of buffers, or fills V8's heap without end.
const NODE_APP: &str = r#"
exports.handler = async (event) => {
  const kept = [];
  for (let i = 0; i < (event.mb || 0); i++) kept.push(Buffer.alloc(1024 * 1024, 1));
  while (event.hog) kept.push(new Array(100000).fill(kept.length));
  return { node: process.version, kept: kept.length };
};
"#;

/// A custom runtime in Python that echoes its events.
const ECHO_BOOTSTRAP: &str = r#"#!/usr/bin/env python3
import os, urllib.request
API = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]
while True:
    with urllib.request.urlopen(API + "/invocation/next") as response:
        request_id = response.headers["Lambda-Runtime-Aws-Request-Id"]
        event = response.read()
    answer = urllib.request.Request(API + "/invocation/%s/response" % request_id, data=event, method="POST")
    urllib.request.urlopen(answer).read()
"#;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Whether a test that needs root can run; says why not otherwise.
fn root_or_skip(test: &str) -> bool {
    if !is_root() {
        println!(
            "skipping {test}: instances run as users of their own only when the invoker is root"
        );
    }
    is_root()
}

/// Whether the instance that answered ran as a user of its own.
fn body_is_isolated(body: &serde_json::Value) -> bool {
    body["uid"] != json!(rustix::process::geteuid().as_raw())
}

async fn probe_function(f: &Fixture, name: &str, handler: &str) -> FunctionConfig {
    function(
        &*f.store,
        name,
        "python3.11",
        Some(handler),
        &[("probe.py", PROBE_APP)],
    )
    .await
}

/// The live (not zombie) processes whose real user is `uid`.
fn live_processes_of(uid: u64) -> usize {
    processes_of(uid, false)
}

fn processes_of(uid: u64, with_zombies: bool) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u64>().ok())
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::trim)
                    .unwrap_or_default()
                    .to_owned()
            };
            let owned = field("Uid:").split_whitespace().next() == Some(&uid.to_string());
            owned && (with_zombies || !field("State:").starts_with('Z'))
        })
        .count()
}

#[tokio::test]
async fn each_instance_has_its_own_working_folder_and_tmpdir() {
    let f = fixture(|_| {}).await;
    let who = probe_function(&f, "who", "probe.whoami").await;
    let barrier = shared_dir();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let invoker = f.invoker.clone();
            let call = request(&who, json!({"dir": barrier.path()}));
            tokio::spawn(async move { nimbus_core::Invoker::invoke(&*invoker, call).await })
        })
        .collect();
    eventually("two instances running", || {
        common::started(barrier.path()) == 2
    })
    .await;
    std::fs::write(barrier.path().join("release"), "").unwrap();
    let mut bodies = Vec::new();
    for call in calls {
        bodies.push(succeeded(&call.await.unwrap().unwrap()));
    }
    let (a, b) = (&bodies[0], &bodies[1]);
    for body in [a, b] {
        assert_eq!(body["cwd"], body["task_root"]);
        assert_eq!(body["home"], body["tmpdir"]);
        let tmp = Path::new(body["tmpdir"].as_str().unwrap());
        let mode = std::os::unix::fs::PermissionsExt::mode(&tmp.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o700, "{}", tmp.display());
    }
    assert_ne!(a["tmpdir"], b["tmpdir"]);
    if body_is_isolated(a) {
        // Each instance is a user of its own, with no supplementary groups, and sees its
        // own copy of the code.
        assert_ne!(a["cwd"], b["cwd"]);
        assert_ne!(a["uid"], b["uid"]);
        for body in [a, b] {
            assert_ne!(body["uid"], json!(0));
            assert_eq!(body["gid"], body["uid"]);
            assert_eq!(body["groups"], json!([]));
        }
    } else {
        println!("not root: instances share the invoker's user and the code folder");
    }
    f.invoker.shutdown().await;
    for body in [a, b] {
        let dir = Path::new(body["tmpdir"].as_str().unwrap());
        assert!(!dir.exists(), "{} outlived its instance", dir.display());
        let cwd = Path::new(body["cwd"].as_str().unwrap());
        assert_eq!(cwd.exists(), !body_is_isolated(body), "{}", cwd.display());
    }
}

#[tokio::test]
async fn limits_are_visible_inside_the_function() {
    let f = fixture(|_| {}).await;
    let who = probe_function(&f, "limits", "probe.whoami").await;
    let body = succeeded(&f.invoke(request(&who, json!({}))).await);
    assert_eq!(body["nofile"], json!([1024, 1024]));
    assert_eq!(body["core"], json!([0, 0]));
    // MemorySize plus the headroom for what the runtime commits but the function never uses.
    let data = (128 + 64) * 1024 * 1024;
    assert_eq!(body["data"], json!([data, data]));
    // Processes are limited per user: only an instance with a user of its own has a limit.
    if body["uid"] != json!(rustix::process::geteuid().as_raw()) {
        assert_eq!(body["nproc"], json!([1024, 1024]));
    }
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn the_environment_is_the_function_s_own_and_lambda_s() {
    let f = fixture(|_| {}).await;
    // Node.js adds nothing to its environment (an interpreter behind a shim, as pyenv's
    // python is, would add the shim's variables).
    let mut env = function(
        &*f.store,
        "env",
        "nodejs20.x",
        Some("index.handler"),
        &[(
            "index.js",
            "exports.handler = async () => Object.keys(process.env).sort();",
        )],
    )
    .await;
    env.environment.insert("MINE".to_owned(), "yes".to_owned());
    let seen: BTreeSet<String> =
        serde_json::from_value(succeeded(&f.invoke(request(&env, json!({}))).await)).unwrap();
    let allowed: BTreeSet<&str> = [
        "MINE",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_EXECUTION_ENV",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "PATH",
        "LANG",
        "TZ",
        "HOME",
        "TMPDIR",
        "_HANDLER",
    ]
    .into_iter()
    .collect();
    let leaked: Vec<_> = seen
        .iter()
        .filter(|k| !allowed.contains(k.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "the invoker's environment leaked: {leaked:?}"
    );
    assert!(seen.contains("MINE"));
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn a_function_cannot_read_another_s_code_tmp_or_environment() {
    if !root_or_skip("a_function_cannot_read_another_s_code_tmp_or_environment") {
        return;
    }
    let f = fixture(|_| {}).await;
    let mut victim = probe_function(&f, "victim", "probe.whoami").await;
    victim
        .environment
        .insert("SECRET".to_owned(), "victim-secret".to_owned());
    let victim_view = succeeded(&f.invoke(request(&victim, json!({}))).await);
    // The victim's instance stays warm (its process alive) while the other one probes.
    let task_root = PathBuf::from(victim_view["task_root"].as_str().unwrap());
    let tmp = PathBuf::from(victim_view["tmpdir"].as_str().unwrap());
    std::fs::write(tmp.join("note"), "private").unwrap();
    let pid = victim_view["pid"].as_u64().unwrap();
    let code_cache = f.dir.path().join("data/code");
    let victim_code = code_cache.join(victim.code_sha256.to_hex());
    let theirs: Vec<PathBuf> = vec![
        task_root.clone(),
        task_root.join("probe.py"),
        tmp.clone(),
        tmp.join("note"),
        PathBuf::from(format!("/proc/{pid}/environ")),
        PathBuf::from(format!("/proc/{pid}/cwd/probe.py")),
        code_cache.clone(),
        victim_code.join("probe.py"),
    ];

    // Different code, so that reading its own files proves nothing about the victim's.
    let spy = function(
        &*f.store,
        "spy",
        "python3.11",
        Some("probe.probe"),
        &[("probe.py", PROBE_APP), ("spy.txt", "the spy's own")],
    )
    .await;
    let mut paths = theirs.clone();
    paths.push(PathBuf::from("spy.txt"));
    paths.push(PathBuf::from("/proc/self/environ"));
    let api = victim_view["api"].as_str().unwrap();
    let seen = succeeded(
        &f.invoke(request(&spy, json!({ "paths": paths, "apis": [api] })))
            .await,
    );
    for path in &theirs {
        let key = path.to_str().unwrap();
        assert_eq!(seen[key], json!("PermissionError"), "{key}: {seen}");
    }
    // The victim's Runtime API hangs up on another user at once (rather than handing out
    // the victim's next event, or making the spy wait for one).
    let refused = seen[api].as_str().unwrap();
    assert!(
        [
            "RemoteDisconnected",
            "ConnectionResetError",
            "BadStatusLine"
        ]
        .contains(&refused),
        "{seen}"
    );
    assert_eq!(seen["spy.txt"], json!("ok"), "{seen}");
    assert_eq!(seen["/proc/self/environ"], json!("ok"), "{seen}");
    // The victim is unharmed and still served by its warm instance.
    let again = succeeded(&f.invoke(request(&victim, json!({}))).await);
    assert_eq!(again["pid"], victim_view["pid"]);
    assert_eq!(f.invoker.stats().instances_started, 2);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn a_python_memory_hog_fails_alone_and_its_instance_is_replaced() {
    let f = fixture(|_| {}).await;
    let hog = probe_function(&f, "hog", "probe.hog").await;
    assert_eq!(hog.memory_mb, 128);
    // Within its memory size, a function gets what it asked for.
    let body = succeeded(&f.invoke(request(&hog, json!({"mb": 100}))).await);
    assert_eq!(body, json!(100));

    let mut call = request(&hog, json!({"mb": 4096}));
    call.want_log_tail = true;
    let id = call.request_id;
    let outcome = f.invoke(call).await;
    let error = failed(&outcome);
    assert_eq!(outcome.error_type.as_deref(), Some("Runtime.OutOfMemory"));
    assert_eq!(error["errorType"], json!("Runtime.OutOfMemory"));
    assert_eq!(
        error["errorMessage"],
        json!(format!(
            "RequestId: {id} Error: Runtime exited with error: out of memory (Memory Size: 128 MB)"
        ))
    );
    assert!(outcome.log_tail.unwrap().contains("Runtime.OutOfMemory"));
    let stats = f.invoker.stats();
    assert_eq!((stats.warm, stats.busy), (0, 0), "the instance was retired");

    // Other functions keep answering, and the hog gets a fresh instance.
    let who = probe_function(&f, "bystander", "probe.whoami").await;
    succeeded(&f.invoke(request(&who, json!({}))).await);
    assert_eq!(
        succeeded(&f.invoke(request(&hog, json!({"mb": 1}))).await),
        json!(1)
    );
    assert_eq!(f.invoker.stats().instances_started, 3);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn node_python_and_provided_run_at_128_mb_and_a_node_hog_fails_alone() {
    let f = fixture(|_| {}).await;
    let node = function(
        &*f.store,
        "node",
        "nodejs20.x",
        Some("index.handler"),
        &[("index.js", NODE_APP)],
    )
    .await;
    let python = probe_function(&f, "python", "probe.whoami").await;
    let provided = function(
        &*f.store,
        "provided",
        "provided.al2023",
        None,
        &[("bootstrap", ECHO_BOOTSTRAP)],
    )
    .await;
    for function in [&node, &python, &provided] {
        assert_eq!(function.memory_mb, 128);
    }
    let body = succeeded(&f.invoke(request(&node, json!({"mb": 64}))).await);
    assert_eq!(body["kept"], json!(64));
    succeeded(&f.invoke(request(&python, json!({}))).await);
    assert_eq!(
        succeeded(&f.invoke(request(&provided, json!({"hi": 1}))).await),
        json!({"hi": 1})
    );

    // V8 aborts when it cannot get memory: the invocation fails, the instance is replaced.
    let outcome = f.invoke(request(&node, json!({"hog": true}))).await;
    let error = failed(&outcome);
    assert_eq!(error["errorType"], json!("Runtime.ExitError"), "{error}");
    succeeded(&f.invoke(request(&python, json!({}))).await);
    let body = succeeded(&f.invoke(request(&node, json!({}))).await);
    assert_eq!(body["kept"], json!(0));
    assert_eq!(f.invoker.stats().instances_started, 4);
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_leaves_nothing_behind() {
    if !root_or_skip("a_fork_bomb_is_contained_and_leaves_nothing_behind") {
        return;
    }
    // Few processes per instance, so that the bomb runs out quickly.
    let f = fixture(|config| config.function_processes = 64).await;
    let mut bomb = probe_function(&f, "bomb", "probe.bomb").await;
    bomb.timeout_secs = 3;
    let bystander = probe_function(&f, "bystander", "probe.whoami").await;
    let dir = shared_dir();
    let exploding = tokio::spawn({
        let invoker = f.invoker.clone();
        let call = request(&bomb, json!({"dir": dir.path()}));
        async move { nimbus_core::Invoker::invoke(&*invoker, call).await }
    });
    let uid_file = dir.path().join("bomb-uid");
    eventually("the bomb starting", || uid_file.exists()).await;
    let uid: u64 = std::fs::read_to_string(&uid_file).unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    eventually("the bomb running out of processes", || {
        live_processes_of(uid) >= 60
    })
    .await;
    assert!(live_processes_of(uid) <= 64, "RLIMIT_NPROC holds");

    // While the bomb sits on all the processes it may have, others keep answering.
    let body = succeeded(&f.invoke(request(&bystander, json!({}))).await);
    assert_ne!(body["uid"].as_u64(), Some(uid));

    let outcome = exploding.await.unwrap().unwrap();
    let error = failed(&outcome);
    assert_eq!(error["errorType"], json!("Sandbox.Timedout"), "{error}");
    // Every process of the bomb's user is gone, those that left its process group too, and
    // none is left a zombie.
    eventually("the bomb's processes gone", || processes_of(uid, true) == 0).await;
    succeeded(&f.invoke(request(&bystander, json!({}))).await);
    let mut again = bomb.clone();
    again.handler = Some("probe.whoami".to_owned());
    again.revision_id = "r2".to_owned();
    let body = succeeded(&f.invoke(request(&again, json!({}))).await);
    assert_eq!(body["nproc"], json!([64, 64]));
    f.invoker.shutdown().await;
}

#[tokio::test]
async fn code_zipped_without_read_rights_for_others_still_runs() {
    use std::io::Write as _;
    let f = fixture(|_| {}).await;
    // Python's zipfile writes entries as 0600: only the invoker's user could read them.
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().unix_permissions(0o600);
    writer.start_file("probe.py", options).unwrap();
    writer.write_all(PROBE_APP.as_bytes()).unwrap();
    let zip = bytes::Bytes::from(writer.finish().unwrap().into_inner());
    let sha = nimbus_core::CodeSha256::of(&zip);
    f.store.put_code(&sha, zip.clone()).await.unwrap();
    let mut private = probe_function(&f, "private", "probe.whoami").await;
    private.code_sha256 = sha;
    private.code_size = zip.len() as u64;
    let body = succeeded(&f.invoke(request(&private, json!({}))).await);
    assert_eq!(body["nofile"], json!([1024, 1024]));
    f.invoker.shutdown().await;
}
