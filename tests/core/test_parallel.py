"""``jaxpro.core.pmap_batch`` equals ``jax.vmap`` on one device, on one and on four devices.

Oracle: ``jax.vmap(fn)`` (and its sum or mean over the batch) computed on one
device, unsharded. Values agree to rounding: a reduction may sum in another
order across devices, so the tolerance is relative 1e-13 (about 450 float64 ulps,
far below any real difference). The four-device checks run in a subprocess with
``jax_num_cpu_devices=4`` (this process keeps JAX's default single CPU device).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpro.core import BatchResult, _parallel, device_mesh, pmap_batch, resolve_devices
from jaxpro.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
RTOL = 1e-13


def model(params, scale):
    """A pytree in, a pytree out: per element a (3,) vector and a scalar."""
    return {
        "wave": jnp.sin(params["x"]) * scale,
        "energy": jnp.sum(params["y"] ** 2) + jnp.log1p(params["x"][0] ** 2),
    }


def batch(size, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(size, 3)), "y": rng.normal(size=(size, 2, 2))}


SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    jax.config.update("jax_num_cpu_devices", 4)
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    def no_pmap(*args, **kwargs):
        raise AssertionError("jax.pmap was called")

    jax.pmap = no_pmap  # the legacy API must never be used
    from jaxpro.core import pmap_batch

    def model(params, scale):
        return {"wave": jnp.sin(params["x"]) * scale,
                "energy": jnp.sum(params["y"] ** 2) + jnp.log1p(params["x"][0] ** 2)}

    def gap(got, want):
        return max(jax.tree.leaves(jax.tree.map(
            lambda g, w: float(jnp.max(jnp.abs(g - w)) / (1 + jnp.max(jnp.abs(w)))), got, want)))

    out = {"devices": jax.device_count(), "cases": {}}
    for size in (1, 3, 4, 5, 7, 13, 1001):
        rng = np.random.default_rng(size)
        params = {"x": rng.normal(size=(size, 3)), "y": rng.normal(size=(size, 2, 2))}
        want = jax.vmap(model, in_axes=(0, None))(params, 2.5)
        got = pmap_batch(model, params, 2.5, axis=(0, None))
        total = pmap_batch(model, params, 2.5, axis=(0, None), collective="sum")
        mean = pmap_batch(model, params, 2.5, axis=(0, None), collective="mean")
        out["cases"][size] = {
            "gap": gap(got.values, want),
            "shapes_match": jax.tree.all(jax.tree.map(lambda g, w: g.shape == w.shape,
                                                      got.values, want)),
            "sum_gap": gap(total.values, jax.tree.map(lambda w: jnp.sum(w, 0), want)),
            "mean_gap": gap(mean.values, jax.tree.map(lambda w: jnp.mean(w, 0), want)),
            "settings": got.plan.settings,
            "method": got.plan.method,
            "sum_method": total.plan.method,
            "reasons": list(got.plan.reasons),
            "result_devices": len(got.values["wave"].sharding.device_set),
        }
    # batch along another axis, given negative; a jax.Array input
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 10)))
    got = pmap_batch(lambda col: jnp.cumsum(col) * col[0], x, axis=-1)
    want = jax.vmap(lambda col: jnp.cumsum(col) * col[0], in_axes=1)(x)
    out["axis_gap"] = gap(got.values, want)
    out["axis_shape"] = list(got.values.shape)
    # a subset of the devices
    two = pmap_batch(jnp.cos, np.arange(8.0), devices=2)
    out["two"] = {"count": two.plan.settings["device_count"],
                  "on": len(two.values.sharding.device_set),
                  "gap": gap(two.values, jnp.cos(np.arange(8.0)))}
    # an integer reduction (a count) stays exact
    count = pmap_batch(lambda v: (v > 0).astype(jnp.int64), np.arange(-6, 7), collective="sum")
    out["count"] = int(count.values)
    # the second call with the same shapes reuses the compiled program
    again = pmap_batch(model, batch := {"x": np.ones((1001, 3)), "y": np.ones((1001, 2, 2))},
                       2.5, axis=(0, None))
    out["second_compile"] = again.timings.compile
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_four_devices_equal_vmap_for_odd_batches_and_pytrees(four_devices):
    assert four_devices["devices"] == 4
    for size, case in four_devices["cases"].items():
        assert case["shapes_match"], size
        assert case["gap"] <= RTOL, (size, case["gap"])
        assert case["method"] == "jit+NamedSharding"


def test_four_devices_split_the_batch_and_pad_it(four_devices):
    expected = {  # size: (devices used, per device, padding)
        "1": (1, 1, 0),
        "3": (3, 1, 0),
        "4": (4, 1, 0),
        "5": (4, 2, 3),
        "7": (4, 2, 1),
        "13": (4, 4, 3),
        "1001": (4, 251, 3),
    }
    for size, (used, per_device, padding) in expected.items():
        settings = four_devices["cases"][size]["settings"]
        assert (settings["device_count"], settings["per_device"], settings["padding"]) == (
            used,
            per_device,
            padding,
        ), size
        assert settings["devices"] == [f"cpu:{i}" for i in range(used)]
        reasons = " ".join(four_devices["cases"][size]["reasons"])
        assert f"{per_device} element(s) per device" in reasons
        if padding:
            assert f"{padding} padding element(s)" in reasons
            assert four_devices["cases"][size]["result_devices"] == 1  # gathered, one copy
        else:
            assert four_devices["cases"][size]["result_devices"] == used  # stays split
    assert "only 3 of 4 devices" in " ".join(four_devices["cases"]["3"]["reasons"])


def test_four_devices_collectives_leave_the_padding_out(four_devices):
    for size, case in four_devices["cases"].items():
        assert case["sum_gap"] <= RTOL, (size, case["sum_gap"])
        assert case["mean_gap"] <= RTOL, (size, case["mean_gap"])
        assert case["sum_method"] == "shard_map+psum (sum)"
    assert four_devices["count"] == 6  # 1..6 are positive; padding (copies of 6) not counted


def test_four_devices_other_axis_subset_of_devices_and_cached_program(four_devices):
    assert four_devices["axis_gap"] <= RTOL
    assert four_devices["axis_shape"] == [10, 3]  # vmap's out_axes=0
    assert four_devices["two"] == {"count": 2, "on": 2, "gap": 0.0}
    assert four_devices["second_compile"] == 0.0


@pytest.mark.parametrize("size", [1, 6])
def test_one_device_equals_vmap(size):
    params = batch(size)
    got = pmap_batch(model, params, 1.5, axis=[0, None])
    want = jax.vmap(model, in_axes=(0, None))(params, 1.5)
    for key in want:
        np.testing.assert_allclose(np.asarray(got.values[key]), np.asarray(want[key]), rtol=RTOL)
    assert got.plan.settings["device_count"] == 1 and got.plan.settings["padding"] == 0
    assert "jaxpro.use_cpu_cores()" in " ".join(got.plan.reasons)


def test_one_device_mean():
    params = batch(9)
    got = pmap_batch(model, params, 1.5, axis=(0, None), collective="mean")
    want = jax.vmap(model, in_axes=(0, None))(params, 1.5)
    np.testing.assert_allclose(np.asarray(got.values["wave"]), np.mean(want["wave"], 0), rtol=RTOL)
    assert got.values["energy"].shape == ()


def test_result_reports_serialises_and_saves(tmp_path):
    got = pmap_batch(model, batch(5), 1.0, axis=(0, None))
    assert isinstance(got, BatchResult)
    text = got.summary()
    assert "5 elements over 1 device(s)" in text and "output ['wave']: shape (5, 3)" in text
    payload = json.loads(got.to_json())
    assert payload["kind"] == "batch"
    assert payload["outputs"]["['energy']"] == {"shape": [5], "dtype": "float64"}
    np.testing.assert_allclose(payload["values"]["['wave']"], np.asarray(got.values["wave"]))
    assert payload["plan"]["settings"]["batch"] == 5
    assert payload["timings"]["compile_s"] >= 0.0
    out = got.save(tmp_path / "run")
    assert (out / "result.json").exists() and (out / "batch.png").stat().st_size > 0


def test_large_outputs_are_described_not_dumped(monkeypatch):
    monkeypatch.setattr(_parallel, "MAX_JSON_ELEMENTS", 10)
    payload = pmap_batch(model, batch(5), 1.0, axis=(0, None)).to_dict()
    assert "values" not in payload and payload["values_omitted"] == "more than 10 elements"


# ---------------------------------------------------------------------------
# Bad input: an InputError naming the argument and quoting what it got
# ---------------------------------------------------------------------------


def test_fn_must_be_callable():
    with pytest.raises(InputError, match=r"fn: must be a callable \(got 3\)"):
        pmap_batch(3, np.ones(4))


def test_needs_an_argument():
    with pytest.raises(InputError, match="batched_args: needs at least one argument"):
        pmap_batch(jnp.sin)


def test_batch_lengths_must_agree_and_the_odd_one_is_named():
    with pytest.raises(InputError) as info:
        pmap_batch(model, {"x": np.ones((4, 3)), "y": np.ones((5, 2, 2))}, 1.0, axis=(0, None))
    assert info.value.argument == "batched_args[0]['y']"
    assert "has 5 elements along its batch axis 0, but batched_args[0]['x'] has 4" in str(
        info.value
    )
    assert "shape (5, 2, 2)" in str(info.value)
    with pytest.raises(InputError, match=r"batched_args\[1\]: has 2 elements"):
        pmap_batch(jnp.add, np.ones(3), np.ones(2))


def test_axis_is_checked():
    with pytest.raises(InputError, match=r"batched_args\[0\]: has no axis 2 to map over"):
        pmap_batch(jnp.sin, np.ones((3, 2)), axis=2)
    with pytest.raises(InputError, match="axis: needs one entry per argument"):
        pmap_batch(jnp.add, np.ones(3), np.ones(3), axis=(0,))
    with pytest.raises(InputError, match="axis: must batch at least one argument"):
        pmap_batch(jnp.sin, np.ones(3), axis=None)
    with pytest.raises(InputError, match="axis: entries must be ints or None"):
        pmap_batch(jnp.sin, np.ones(3), axis=1.0)


def test_batched_leaves_must_be_arrays_and_non_empty():
    with pytest.raises(InputError, match=r"batched_args\[0\]\['k'\]: every leaf must be an array"):
        pmap_batch(lambda d: d["k"], {"k": "text"})
    with pytest.raises(InputError, match=r"batched_args\[0\]: the batch is empty"):
        pmap_batch(jnp.sin, np.ones((0, 3)))


def test_collective_is_checked():
    with pytest.raises(
        InputError,
        match=r"collective: must be None or one of \('sum', 'mean'\)"
        r" \(got 'max'\)",
    ):
        pmap_batch(jnp.sin, np.ones(3), collective="max")


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        (0, "devices: must be between 1 and the 1 device"),
        (5, "devices: must be between 1 and the 1 device"),
        (True, "devices: must be None, a device count or a list of devices"),
        ("cpu", "devices: must be None, a device count or a non-empty list"),
        ([], "devices: must be None, a device count or a non-empty list"),
        (["cpu:0"], r"devices: must hold jax.Device objects"),
    ],
)
def test_devices_are_checked(devices, message):
    with pytest.raises(InputError, match=message):
        pmap_batch(jnp.sin, np.ones(3), devices=devices)


def test_a_device_named_twice_is_refused():
    device = jax.devices()[0]
    with pytest.raises(InputError, match="devices: names a device twice"):
        resolve_devices([device, device])


def test_device_mesh_is_one_axis_over_the_devices():
    mesh = device_mesh(axis_name="chains")
    assert mesh.axis_names == ("chains",) and mesh.devices.size == len(jax.devices())
    with pytest.raises(InputError, match="axis_name: must be a non-empty string"):
        device_mesh(axis_name="")


def test_the_readme_guide_runs_on_four_devices():
    """The README's plain-JAX answer to the pmap question runs as printed."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Several devices: the `pmap` question")[1]
    snippet = section.split("```python\n")[1].split("```")[0]
    prelude = (
        "import jax, numpy as np\n"
        "jax.config.update('jax_num_cpu_devices', 4)\n"
        "f = lambda x: x ** 2 + 1.0\n"
        "xs = np.arange(8.0)\n"
    )
    check = (
        "\nimport json\n"
        "print(json.dumps({'ys': np.asarray(ys).tolist(), 'total': float(total),"
        " 'split': len(ys.sharding.device_set)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    out = subprocess.run(
        [sys.executable, "-c", prelude + snippet + check],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"ys": [x * x + 1.0 for x in range(8)], "total": 148.0, "split": 4}
