"""Local Kubernetes API server (kube-apiserver + etcd) for tests (standard library only).

This module owns everything needed to run one real kube-apiserver on 127.0.0.1 without
Docker or a kubelet, so that `kubectl apply --dry-run=server` can judge manifests the way a
real cluster does (schemas, defaulting, validation, admission, CRD schemas):

* building `kube-apiserver` (Go module k8s.io/kubernetes, cmd/kube-apiserver) and `etcd`
  (go.etcd.io/etcd/server/v3) with the machine's Go, and copying the CustomResourceDefinitions
  of KEDA and of the Prometheus operator out of their Go modules, into a per-version cache
  outside the repo (``ensure_fetched``); a cached step is never redone;
* building `promql-check` from Prometheus' own rule loader and PromQL parser, which judges what
  the CRDs cannot: the PromQL and templates inside a PrometheusRule (``promql_check``);
* starting etcd and the API server as child process groups, with a self-signed serving
  certificate and a static bearer token, waiting until `/readyz` answers and the `default`
  namespace exists, and writing a kubeconfig for them (``LocalKubeApiserver``);
* a small CLI (``fetch`` / ``start`` / ``stop`` / ``status``) for shells, which leaves the
  server running in the background; ``start`` prints the kubeconfig's path as its last line.

It does not own what is applied: callers run `kubectl --kubeconfig ...` themselves
(``LocalKubeApiserver.install_crds`` applies the cached CRDs).

There are no nodes, controllers or schedulers: objects are stored and validated, never run.

Environment:
  LAKE_INGEST_CACHE   cache root (default: $XDG_CACHE_HOME/lake-ingest or ~/.cache/lake-ingest);
                      everything goes to <root>/kube-<KUBERNETES_VERSION>/.
  GOMODCACHE, GOPROXY the machine's Go settings, used as they are (GOTOOLCHAIN is forced to
                      `local`: a build never downloads another Go).

Files in a server's data dir:
  pki/            serving.crt/.key (self-signed, IP 127.0.0.1), sa.key/.pub, tokens.csv
  etcd/           etcd's data
  etcd.log, apiserver.log
  kubeconfig      what `start` prints
  kube.json       written by the CLI ``start`` only
"""

from __future__ import annotations

import argparse
import atexit
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import local_service  # noqa: E402
from local_service import cache_root, free_port, terminate_group  # noqa: E402

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.16"
# The newest KEDA whose go.mod asks for a Go this machine has (v2.21 needs Go 1.27).
KEDA_VERSION = "v2.20.2"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
# The Prometheus the operator's v0.85.0 is built against: its rule-file loader checks PrometheusRules.
PROMETHEUS_VERSION = "v0.305.0"
CRD_SOURCES = {
    "keda": ("github.com/kedacore/keda/v2", KEDA_VERSION, "config/crd/bases"),
    "prometheus-operator": ("github.com/prometheus-operator/prometheus-operator", PROMETHEUS_OPERATOR_VERSION,
                            "example/prometheus-operator-crd"),
}
# The same flags for every build, so Go's build cache is reused across fetches.
GO_BUILD_FLAGS = ["-trimpath", "-ldflags=-s -w"]
SERVICE_CIDR = "10.96.0.0/16"
TOKEN_USER = "lake-ingest-admin"
READY_TIMEOUT_S = 120.0
LOG_TAIL_LINES = 30


class KubeSetupError(RuntimeError):
    """The API server could not be built, fetched or started."""


# `promql-check rules FILE...` loads rule files as Prometheus does (`promtool check rules`: every
# expr parses, every `for` is a duration, every annotation template compiles); `promql-check exprs
# FILE...` parses one PromQL expression per line. A CRD's schema holds `expr` as any string.
PROMQL_CHECK_GO = r"""
package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: promql-check rules FILE... | promql-check exprs FILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[2:] {
		switch os.Args[1] {
		case "rules":
			groups, errs := rulefmt.ParseFile(path, false)
			for _, err := range errs {
				fmt.Fprintln(os.Stderr, err) // names the file itself
				failed = true
			}
			if len(errs) == 0 {
				count := 0
				for _, group := range groups.Groups {
					count += len(group.Rules)
				}
				fmt.Printf("%s: %d rules ok\n", path, count)
			}
		case "exprs":
			file, err := os.Open(path)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			scanner := bufio.NewScanner(file)
			line, count := 0, 0
			for scanner.Scan() {
				line++
				if scanner.Text() == "" {
					continue
				}
				count++
				if _, err := parser.ParseExpr(scanner.Text()); err != nil {
					fmt.Fprintf(os.Stderr, "%s:%d: %v\n", path, line, err)
					failed = true
				}
			}
			file.Close()
			fmt.Printf("%s: %d expressions read\n", path, count)
		default:
			fmt.Fprintf(os.Stderr, "unknown mode %q: rules or exprs\n", os.Args[1])
			os.Exit(2)
		}
	}
	if failed {
		os.Exit(1)
	}
}
"""


# --------------------------------------------------------------------------
# Building and fetching


def version_dir() -> Path:
    return cache_root() / f"kube-{KUBERNETES_VERSION}"


def _go(args: list[str], cwd: Path, what: str) -> str:
    go = shutil.which("go")
    if not go:
        raise KubeSetupError(f"go not found: install Go 1.24+ to build {what}")
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod -buildvcs=false"}
    proc = subprocess.run([go, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-LOG_TAIL_LINES:])
        raise KubeSetupError(f"`go {' '.join(args)}` in {cwd} failed (exit {proc.returncode}) building {what}:\n{tail}")
    return proc.stdout


def _module_dir(module: str, version: str, scratch: Path) -> Path:
    out = _go(["mod", "download", "-json", f"{module}@{version}"], scratch, module)
    return Path(json.loads(out)["Dir"])


def _staging_replaces(kubernetes_dir: Path) -> list[str]:
    """k8s.io/kubernetes replaces its staging modules (k8s.io/api, ...) by folders that its module
    zip leaves out; a module that builds it must point each at its published v0.<minor> release."""
    published = "v0" + KUBERNETES_VERSION[2:]
    lines = []
    for line in (kubernetes_dir / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
            lines.append(f"\t{parts[0]} => {parts[0]} {published}")
    if not lines:
        raise KubeSetupError(f"{kubernetes_dir / 'go.mod'}: no staging replaces found; unexpected k8s.io/kubernetes layout")
    return lines


def _build_kube_apiserver(vdir: Path, target: Path) -> None:
    work = vdir / "build" / "kube-apiserver"
    work.mkdir(parents=True, exist_ok=True)
    kubernetes = _module_dir("k8s.io/kubernetes", KUBERNETES_VERSION, work)
    # Its own go and godebug lines, so the binary behaves as the released one.
    (work / "go.mod").write_text("module lakeingest.local/kubebuild\n\ngo 1.24.0\n\ngodebug default=go1.24\n\n"
                                 f"require k8s.io/kubernetes {KUBERNETES_VERSION}\n\nreplace (\n"
                                 + "\n".join(_staging_replaces(kubernetes)) + "\n)\n")
    (work / "go.sum").unlink(missing_ok=True)
    package = "k8s.io/kubernetes/cmd/kube-apiserver"
    _go(["get", f"{package}@{KUBERNETES_VERSION}"], work, "kube-apiserver")
    _go(["build", *GO_BUILD_FLAGS, "-o", str(target), package], work, "kube-apiserver")


def _build_etcd(vdir: Path, target: Path) -> None:
    work = vdir / "build" / "etcd"
    work.mkdir(parents=True, exist_ok=True)
    # etcd's own go.mod replaces its sibling modules by folders (ignored in a dependency):
    # `go get` resolves them to the same published version.
    (work / "go.mod").write_text(f"module lakeingest.local/etcdbuild\n\ngo 1.26.0\n\n"
                                 f"require go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n")
    (work / "go.sum").unlink(missing_ok=True)
    package = "go.etcd.io/etcd/server/v3"
    _go(["get", f"{package}@{ETCD_VERSION}"], work, "etcd")
    _go(["build", *GO_BUILD_FLAGS, "-o", str(target), package], work, "etcd")


def _build_promql_check(vdir: Path, target: Path) -> None:
    work = vdir / "build" / "promql-check"
    work.mkdir(parents=True, exist_ok=True)
    (work / "main.go").write_text(PROMQL_CHECK_GO)
    (work / "go.mod").write_text(f"module lakeingest.local/promqlcheck\n\ngo 1.24.0\n\n"
                                 f"require github.com/prometheus/prometheus {PROMETHEUS_VERSION}\n")
    (work / "go.sum").unlink(missing_ok=True)
    _go(["get", f"github.com/prometheus/prometheus@{PROMETHEUS_VERSION}"], work, "promql-check")
    _go(["build", *GO_BUILD_FLAGS, "-o", str(target), "."], work, "promql-check")


def _copy_crds(vdir: Path, name: str, target: Path) -> None:
    module, version, folder = CRD_SOURCES[name]
    scratch = vdir / "build" / "crds"
    scratch.mkdir(parents=True, exist_ok=True)
    source = _module_dir(module, version, scratch) / folder
    files = sorted(source.glob("*.yaml"))
    if not files:
        raise KubeSetupError(f"{source}: no CRD YAML in {module}@{version}")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, target / path.name)  # module cache files are read-only; copies are not


def _steps(vdir: Path) -> list[tuple[str, str, Path, object]]:
    """(step, version, output, how): each output is made once per version and then reused."""
    return [
        ("etcd", ETCD_VERSION, vdir / "bin" / "etcd", _build_etcd),
        ("kube-apiserver", KUBERNETES_VERSION, vdir / "bin" / "kube-apiserver", _build_kube_apiserver),
        # The source's hash is in the version: an edited checker is rebuilt.
        ("promql-check", f"{PROMETHEUS_VERSION}-{hashlib.sha256(PROMQL_CHECK_GO.encode()).hexdigest()[:12]}",
         vdir / "bin" / "promql-check", _build_promql_check),
        *((f"crds-{name}", CRD_SOURCES[name][1], vdir / "crds" / name,
           lambda v, t, n=name: _copy_crds(v, n, t)) for name in CRD_SOURCES),
    ]


def _done(vdir: Path, step: str, version: str, output: Path) -> bool:
    try:
        marker = json.loads((vdir / f"{step}.complete.json").read_text())
    except (OSError, ValueError):
        return False
    return marker.get("version") == version and output.exists()


def ensure_fetched(verbose: bool = False) -> Path:
    """Return the cache folder holding bin/ and crds/, building or copying what is missing."""
    vdir = version_dir()
    vdir.mkdir(parents=True, exist_ok=True)
    (vdir / "bin").mkdir(exist_ok=True)
    # Parallel test workers may all call this at once: one builds, the others wait.
    with open(vdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for step, version, output, how in _steps(vdir):
            if _done(vdir, step, version, output):
                continue
            (vdir / f"{step}.complete.json").unlink(missing_ok=True)
            started = time.monotonic()
            if verbose:
                slow = " (minutes on a small machine)" if step == "kube-apiserver" else ""
                print(f"{step} {version}: making{slow}...", file=sys.stderr, flush=True)
            how(vdir, output)
            seconds = time.monotonic() - started
            (vdir / f"{step}.complete.json").write_text(json.dumps({"version": version, "seconds": round(seconds, 1)}))
            if verbose:
                print(f"{step} {version}: done in {seconds:.0f} s", file=sys.stderr, flush=True)
    return vdir


def crd_files(vdir: Path | None = None) -> list[Path]:
    vdir = vdir or version_dir()
    return sorted((vdir / "crds").glob("*/*.yaml"))


def promql_check(mode: str, *files: Path) -> subprocess.CompletedProcess:
    """Run the cached checker (`rules` or `exprs`, see PROMQL_CHECK_GO) on files."""
    binary = version_dir() / "bin" / "promql-check"
    if not binary.exists():
        raise KubeSetupError(f"{binary} missing: run `{Path(__file__).name} fetch`")
    return subprocess.run([str(binary), mode, *map(str, files)], capture_output=True, text=True, check=False, timeout=60)


# --------------------------------------------------------------------------
# Certificates and the token


def _openssl(args: list[str], cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        raise KubeSetupError("openssl not found: it makes the API server's self-signed certificate")
    proc = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KubeSetupError(f"`openssl {' '.join(args[:3])}` failed: {proc.stderr.strip()}")


def ensure_pki(pki: Path) -> str:
    """Serving certificate, service-account key pair and token file; returns the bearer token."""
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "serving.crt").exists():
        _openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=127.0.0.1",
                  "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                  "-keyout", "serving.key", "-out", "serving.crt"], pki)
    if not (pki / "sa.pub").exists():
        _openssl(["genrsa", "-out", "sa.key", "2048"], pki)
        _openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], pki)
    tokens = pki / "tokens.csv"
    if not tokens.exists():
        # system:masters: every verb on every resource, without waiting for RBAC's bootstrap roles.
        tokens.write_text(f'{secrets.token_hex(24)},{TOKEN_USER},{TOKEN_USER},"system:masters"\n')
        tokens.chmod(0o600)
    return tokens.read_text().split(",", 1)[0]


def kubeconfig_text(port: int, ca_file: Path, token: str) -> str:
    # JSON is YAML: kubectl reads it, and no YAML library is needed here.
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "lake-ingest-local",
        "clusters": [{"name": "lake-ingest-local",
                      "cluster": {"server": f"https://127.0.0.1:{port}", "certificate-authority": str(ca_file)}}],
        "users": [{"name": TOKEN_USER, "user": {"token": token}}],
        "contexts": [{"name": "lake-ingest-local",
                      "context": {"cluster": "lake-ingest-local", "user": TOKEN_USER, "namespace": "default"}}],
    }, indent=1) + "\n"


# --------------------------------------------------------------------------
# Probes


def http_status(url: str, token: str | None = None, ca_file: Path | None = None, timeout: float = 3.0) -> int:
    """The HTTP status of GET url, 0 when nothing answers."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):
        return 0


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


# --------------------------------------------------------------------------
# The server


class LocalKubeApiserver:
    """etcd and kube-apiserver on 127.0.0.1, living in data_dir. `kubeconfig` is the file to
    give kubectl. A data dir keeps its objects, certificate and token across restarts."""

    def __init__(self, data_dir: str | Path, port: int | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.etcd_port: int | None = None
        self.etcd: subprocess.Popen | None = None
        self.apiserver: subprocess.Popen | None = None
        self.token: str | None = None

    @property
    def pki(self) -> Path:
        return self.data_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- lifecycle
    def start(self) -> LocalKubeApiserver:
        if self.apiserver and self.apiserver.poll() is None:
            return self
        vdir = ensure_fetched()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.token = ensure_pki(self.pki)
        self.port = self.port or free_port()
        self.etcd_port = free_port(avoid={self.port})
        peer_port = free_port(avoid={self.port, self.etcd_port})
        atexit.register(self.stop)
        try:
            self.etcd = self._launch("etcd", [
                str(vdir / "bin" / "etcd"), "--name", "local", "--data-dir", str(self.data_dir / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                "--initial-cluster", f"local=http://127.0.0.1:{peer_port}",
                # A test store: losing it on a power cut costs nothing, waiting on fsync costs seconds.
                "--unsafe-no-fsync", "--log-level", "warn"])
            self._wait("etcd", self.etcd, lambda: http_status(f"http://127.0.0.1:{self.etcd_port}/health") == 200)
            self.apiserver = self._launch("apiserver", [
                str(vdir / "bin" / "kube-apiserver"),
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.port),
                "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
                "--tls-cert-file", str(self.pki / "serving.crt"), "--tls-private-key-file", str(self.pki / "serving.key"),
                "--token-auth-file", str(self.pki / "tokens.csv"), "--authorization-mode", "RBAC",
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(self.pki / "sa.pub"),
                "--service-account-signing-key-file", str(self.pki / "sa.key"),
                "--service-cluster-ip-range", SERVICE_CIDR, "--cert-dir", str(self.pki),
                # Less work on a small machine; nothing here needs them.
                "--profiling=false", "--enable-priority-and-fairness=false", "--watch-cache=false"])
            self._wait("kube-apiserver", self.apiserver, self._ready)
        except BaseException:
            self.stop()
            raise
        self.kubeconfig.write_text(kubeconfig_text(self.port, self.pki / "serving.crt", self.token))
        self.kubeconfig.chmod(0o600)
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        for attribute in ("apiserver", "etcd"):  # the API server first: it writes to etcd until it ends
            proc = getattr(self, attribute)
            setattr(self, attribute, None)
            if proc and proc.poll() is None:
                terminate_group(proc.pid, proc=proc)

    def detach(self) -> dict[str, int]:
        """Forget the running processes so they outlive this Python process."""
        atexit.unregister(self.stop)
        pids = {"apiserver": self.apiserver.pid, "etcd": self.etcd.pid}
        self.apiserver = self.etcd = None
        return pids

    def __enter__(self) -> LocalKubeApiserver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- use
    def kubectl(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        kubectl = shutil.which("kubectl")
        if not kubectl:
            raise KubeSetupError("kubectl not found on PATH")
        return subprocess.run([kubectl, "--kubeconfig", str(self.kubeconfig), *args], input=input,
                              capture_output=True, text=True, check=False, timeout=timeout)

    def install_crds(self, files: list[Path] | None = None, timeout: float = 120) -> list[str]:
        """Create the cached CRDs (server-side: the largest exceed client-side apply's annotation
        limit) and wait until each is Established; returns their names."""
        files = files or crd_files()
        if not files:
            raise KubeSetupError(f"no CRDs under {version_dir() / 'crds'}: run `{Path(__file__).name} fetch`")
        args = [arg for path in files for arg in ("-f", str(path))]
        applied = self.kubectl("apply", "--server-side", "--force-conflicts", "-o", "name", *args, timeout=timeout)
        if applied.returncode != 0:
            raise KubeSetupError(f"installing CRDs failed:\n{applied.stderr}")
        names = applied.stdout.split()
        waited = self.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s", *names,
                              timeout=timeout + 10)
        if waited.returncode != 0:
            raise KubeSetupError(f"CRDs not established:\n{waited.stderr}")
        return names

    # -- steps
    def _launch(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.data_dir / f"{name}.log", "ab") as log:
            # Own process group: stop() signals it whole; a Ctrl-C in the caller's terminal does not.
            return subprocess.Popen(args, cwd=self.data_dir, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def _ready(self) -> bool:
        # readyz covers etcd and the post-start hooks; `default` is created by a controller
        # shortly after, and namespaced manifests without a namespace land there.
        ca = self.pki / "serving.crt"
        return (http_status(f"{self.url}/readyz", self.token, ca) == 200
                and http_status(f"{self.url}/api/v1/namespaces/default", self.token, ca) == 200)

    def _wait(self, what: str, proc: subprocess.Popen, ready, timeout: float = READY_TIMEOUT_S) -> None:
        log = self.data_dir / ("etcd.log" if what == "etcd" else "apiserver.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise KubeSetupError(f"{what} exited with code {proc.returncode} during startup; {log} ends:\n"
                                     + _tail(log))
            if ready():
                return
            time.sleep(0.2)
        raise KubeSetupError(f"{what} not ready after {timeout:g} s; {log} ends:\n{_tail(log)}")


# --------------------------------------------------------------------------
# CLI


def _state_file(data_dir: Path) -> Path:
    return data_dir / "kube.json"


def _is_ours(pid: int, data_dir: Path) -> bool:
    # Guards against signalling an unrelated process that reused the pid.
    return str(data_dir).encode() in b"\0".join(local_service.command_line(pid))


def _read_state(data_dir: Path) -> dict | None:
    state = local_service.read_state(_state_file(data_dir))
    if not state:
        return None
    state["alive"] = {name: pid for name, pid in state["pids"].items()
                      if local_service.is_alive(pid) and _is_ours(pid, data_dir)}
    return state if state["alive"] else None


def _cmd_fetch(args: argparse.Namespace) -> int:
    started = time.monotonic()
    vdir = ensure_fetched(verbose=True)
    print(f"{vdir} (kube-apiserver {KUBERNETES_VERSION}, etcd {ETCD_VERSION}, {len(crd_files(vdir))} CRDs, "
          f"{time.monotonic() - started:.1f} s)")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    data_dir = Path(args.dir).resolve()
    if (state := _read_state(data_dir)):
        print(f"already running (pids {state['alive']}): {state['kubeconfig']}", file=sys.stderr)
        return 1
    server = LocalKubeApiserver(data_dir, port=args.port).start()
    if args.crds:
        server.install_crds()
    state = {"pids": server.detach(), "port": server.port, "etcd_port": server.etcd_port, "url": server.url,
             "kubeconfig": str(server.kubeconfig), "data_dir": str(data_dir), "version": KUBERNETES_VERSION}
    local_service.write_state(_state_file(data_dir), state)
    print(server.kubeconfig)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    data_dir = Path(args.dir).resolve()
    state = _read_state(data_dir)
    pids = [state["alive"][name] for name in ("apiserver", "etcd") if name in state["alive"]] if state else []
    return local_service.stop_command(_state_file(data_dir), state, pids)


def _cmd_status(args: argparse.Namespace) -> int:
    data_dir = Path(args.dir).resolve()
    state = _read_state(data_dir)
    if not state:
        print("not running")
        return local_service.NOT_RUNNING
    token = (data_dir / "pki" / "tokens.csv").read_text().split(",", 1)[0]
    ready = http_status(f"{state['url']}/readyz", token, data_dir / "pki" / "serving.crt") == 200
    health = "ready" if ready and len(state["alive"]) == 2 else "not ready"
    print(f"running pids={state['alive']} url={state['url']} kubeconfig={state['kubeconfig']} ({health})")
    return 0 if health == "ready" else 1


main = local_service.cli(
    __doc__.splitlines()[0], "server",
    {"fetch": _cmd_fetch, "start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status}, KubeSetupError,
    start_options=lambda start: start.add_argument(
        "--crds", action="store_true", help="also install KEDA's and the Prometheus operator's CRDs"),
    fetch_help="only build the binaries and copy the CRDs into the cache",
    start_help="start etcd + kube-apiserver in the background, print the kubeconfig path")


if __name__ == "__main__":
    sys.exit(main())
