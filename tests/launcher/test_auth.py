"""The store token: a multi-node job refuses to start without a secret, a token file must be
private (as ssh insists for keys), and a single-node job makes its own random token."""
import os
import socket
import time

import pytest

from phalanx.launcher.auth import MIN_TOKEN_CHARS, TokenError, job_token, read_token_file

SECRET = "0123456789abcdef0123456789abcdef"
HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers", "hello.py")


def _token_file(tmp_path, mode, text=SECRET):
    path = tmp_path / "token"
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return str(path)


def test_single_node_jobs_make_a_random_token():
    first, second = job_token(environ={}), job_token(environ={})
    assert first != second and len(first) >= MIN_TOKEN_CHARS


def test_multi_node_jobs_refuse_to_start_without_a_secret():
    with pytest.raises(TokenError, match="multi-node job needs a secret .*--rdzv-token-file"):
        job_token(multi_node=True, environ={})


def test_token_sources_in_order(tmp_path):
    path = _token_file(tmp_path, 0o600, "f" * 20)
    env = {"PHALANX_STORE_TOKEN": "e" * 20}
    assert job_token("t" * 20, path, True, env) == "t" * 20
    assert job_token(None, path, True, env) == "e" * 20
    assert job_token(None, path, True, {}) == "f" * 20          # stripped of its newline


def test_a_short_token_is_refused_for_multi_node_jobs():
    with pytest.raises(TokenError, match=r"--rdzv-token has 5 characters.*at least 16"):
        job_token("short", multi_node=True, environ={})
    assert job_token("short", environ={}) == "short"            # one node: loopback only


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o644])
def test_token_files_others_can_access_are_refused(tmp_path, mode):
    path = _token_file(tmp_path, mode)
    with pytest.raises(TokenError, match=f"mode {mode:04o}.*chmod 600"):
        read_token_file(path)


def test_token_file_problems_are_named(tmp_path):
    assert read_token_file(_token_file(tmp_path, 0o400)) == SECRET
    with pytest.raises(TokenError, match="cannot read the token file .*missing"):
        read_token_file(str(tmp_path / "missing"))
    with pytest.raises(TokenError, match="is empty"):
        read_token_file(_token_file(tmp_path, 0o600, "  "))
    os.symlink(tmp_path / "token", tmp_path / "link")
    with pytest.raises(TokenError, match="cannot read"):
        read_token_file(str(tmp_path / "link"))


@pytest.mark.timeout(30)
def test_phalanx_run_multi_node_without_token_fails_at_once(launcher):
    env = launcher.env()
    env.pop("PHALANX_STORE_TOKEN", None)
    start = time.monotonic()
    code, out = launcher.run("--nnodes", "1:2", "--rdzv-endpoint", "127.0.0.1:1", HELLO,
                             env=env, timeout=20)
    assert code != 0 and time.monotonic() - start < 15, out
    assert "phalanx run: a multi-node job needs a secret store token" in out, out
    assert "--rdzv-token-file" in out and "Traceback" not in out, out


@pytest.mark.timeout(60)
def test_phalanx_run_multi_node_with_a_private_token_file(launcher, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = launcher.env()
    env.pop("PHALANX_STORE_TOKEN", None)
    path = _token_file(tmp_path, 0o600)
    code, out = launcher.run("--nnodes", "1:2", "--nproc-per-node", 1, "--rdzv-endpoint",
                             f"127.0.0.1:{port}", "--rdzv-conf", "last_call_timeout=0.2",
                             "--rdzv-token-file", path, HELLO, "--out", tmp_path, env=env,
                             timeout=45)
    assert code == 0, out
    assert "hello from rank 0" in out and SECRET not in out, out
    os.chmod(path, 0o644)
    code, out = launcher.run("--nnodes", "1:2", "--rdzv-endpoint", f"127.0.0.1:{port}",
                             "--rdzv-token-file", path, HELLO, env=env, timeout=20)
    assert code != 0 and "chmod 600" in out, out


@pytest.mark.timeout(30)
def test_phalanx_store_reads_a_private_token_file_and_does_not_print_it(launcher, tmp_path):
    import subprocess
    import sys
    path = _token_file(tmp_path, 0o644)
    cmd = [sys.executable, "-m", "phalanx.launcher", "store", "--port", "0", "--token-file",
           path]
    refused = subprocess.run(cmd, env=launcher.env(), capture_output=True, text=True, timeout=20)
    assert refused.returncode != 0 and "chmod 600" in refused.stderr, refused.stderr
    os.chmod(path, 0o600)
    proc = subprocess.Popen(cmd, env=launcher.env(), stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert f"PHALANX_STORE_TOKEN=$(cat {path})" in lines[1] and SECRET not in "".join(lines)
