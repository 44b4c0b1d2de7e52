"""Envoy-only checks: `envoy --mode validate` on the generated config (bad MOSN config is reported
with its JSON path; the module's ABI version matches) and the CI symbol gate.

These depend on Envoy-specific behaviour (validate mode loads the dynamic module and runs its
config hooks; the ABI is a set of exported `envoy_dynamic_module_callback_*` symbols), hence
envoy_only.

Assumption (contract): the generated envoy.yaml refers to mosn.json by PATH (the module reads and
validates it when Envoy creates the filter/cluster config), so overwriting mosn.json after
generating envoy.yaml makes `envoy --mode validate` see the bad config.
"""
from __future__ import annotations

import json
import subprocess

import pytest

from harness import hosts
from harness.config import build_mosn_config, with_bad_host_address

RUN_DIR_HOST = "envoy"  # run dirs: build/test-runs/<test-name>-envoy/
pytestmark = [pytest.mark.envoy_only]

ABI_MATCHED = "ABI version v0.2.0 matched"
ENVOY_MODULE = "libmosn_envoy.so"


def _config(run_dir):
    listen, *rest = hosts.free_ports(7)
    ports = dict(zip(("s1a", "s1b", "s2", "s3", "dead1", "dead2"), rest))
    return build_mosn_config(listen, ports)


def _generate_envoy_yaml(mosn_ext, run_dir, cfg):
    mosn_json = run_dir / "mosn.json"
    mosn_json.write_text(json.dumps(cfg, indent=2))
    r = subprocess.run([str(mosn_ext), "start", "--host", "envoy", "-c", str(mosn_json), "--work-dir", str(run_dir),
                        "--concurrency", "2", "--print-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"mosn-ext --print-config failed (rc={r.returncode}):\n{r.stdout}\n{r.stderr}"
    envoy_yaml = run_dir / "envoy.yaml"
    envoy_yaml.write_text(r.stdout)
    return mosn_json, envoy_yaml


def _validate(envoy_yaml, run_dir):
    r = hosts.run_envoy(["--mode", "validate", "-c", str(envoy_yaml), "--log-level", "info"],
                        env_extra={"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(hosts.module_dir())},
                        timeout=120, cwd=run_dir)
    out = r.stdout + r.stderr
    (run_dir / f"validate-{envoy_yaml.stem}-rc{r.returncode}.log").write_text(out)
    return r.returncode, out


def test_envoy_binary_resolves():
    """envoy_binary() finds the real ELF behind the `envoy` on PATH (a pyenv shim / Python wrapper)."""
    p = hosts.envoy_binary()
    assert hosts._is_elf(p), p
    r = subprocess.run([str(p), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "/1.40." in r.stdout, f"{p} --version: {r.stdout}{r.stderr}"


@pytest.mark.needs_binary
def test_validate_good_config_and_abi_matched(mosn_ext, run_dir):
    """The generated envoy.yaml validates, and Envoy logs that the module's ABI version matches."""
    _, envoy_yaml = _generate_envoy_yaml(mosn_ext, run_dir, _config(run_dir))
    rc, out = _validate(envoy_yaml, run_dir)
    assert rc == 0, f"envoy --mode validate rejected the generated config (rc={rc}):\n{out[-6000:]}"
    assert ABI_MATCHED in out, f"Envoy did not log `{ABI_MATCHED}` (module not loaded, or ABI mismatch):\n{out[-6000:]}"


@pytest.mark.needs_binary
def test_validate_bad_config_names_json_path(mosn_ext, run_dir):
    """Good mosn.json -> envoy.yaml; then mosn.json (same path) gets a host address without a port:
    `envoy --mode validate` fails and the output names the JSON path of the bad field."""
    good = _config(run_dir)
    mosn_json, envoy_yaml = _generate_envoy_yaml(mosn_ext, run_dir, good)
    bad, json_path = with_bad_host_address(good)
    mosn_json.write_text(json.dumps(bad, indent=2))
    rc, out = _validate(envoy_yaml, run_dir)
    assert rc != 0, f"envoy --mode validate accepted a config with a port-less host address:\n{out[-6000:]}"
    assert json_path in out, (f"Envoy's output does not name `{json_path}` (is mosn.json read by path at "
                              f"config time?):\n{out[-6000:]}")


def _nm(args, path) -> set[str]:
    r = subprocess.run(["nm", "-D", *args, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"nm -D {' '.join(args)} {path} failed: {r.stderr}"
    names = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts:
            names.add(parts[-1].split("@", 1)[0])
    return names


@pytest.mark.needs_binary
def test_abi_symbols_exported_by_envoy():
    """CI gate: every undefined envoy_dynamic_module_callback_* of libmosn_envoy.so is defined
    (exported) by the Envoy binary we run against."""
    so = hosts.module_dir() / ENVOY_MODULE
    assert so.is_file(), f"{so} not built"
    needed = {s for s in _nm(["--undefined-only"], so) if s.startswith("envoy_dynamic_module_callback_")}
    exported = _nm(["--defined-only"], hosts.envoy_binary())
    assert any(s.startswith("envoy_dynamic_module_callback_") for s in exported), \
        f"{hosts.envoy_binary()} exports no envoy_dynamic_module_callback_* (wrong binary?)"
    missing = sorted(needed - exported)
    assert not missing, (f"{len(missing)} callback(s) used by {so.name} are not exported by Envoy "
                         f"{hosts.envoy_binary()}:\n" + "\n".join(missing))
    own = _nm(["--defined-only"], so)
    assert "envoy_dynamic_module_on_program_init" in own, f"{so.name} does not export envoy_dynamic_module_on_program_init"


@pytest.mark.needs_binary
def test_envoy_module_exports_no_c_abi():
    """The C ABI (mosn_ext_*) is a layer only Nginx and C hosts load: the Envoy module links the
    core directly and exports none of it; the C library exports it."""
    so = hosts.module_dir() / ENVOY_MODULE
    leaked = sorted(s for s in _nm(["--defined-only"], so) if s.startswith("mosn_ext_"))
    assert not leaked, f"{so.name} exports {len(leaked)} mosn_ext_* symbols: {leaked[:5]}"
    c_lib = _nm(["--defined-only"], hosts.module_dir() / "mosn_extension.so")
    assert "mosn_ext_stream_new" in c_lib and "mosn_ext_abi_version" in c_lib
