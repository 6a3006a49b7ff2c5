"""Malformed registry files, case by case (the numbers are issue 16's items): each ends in a clear
ZooError (the fuzz suite, test_fuzz_file_readers.py, keeps it so). Weight files:
hub/test_malformed_weights.py; NIfTI and DICOM: data/test_malformed_images.py."""
import json
import os
import re
import textwrap
import time

import pytest
from _proc import run_python

import zoo
from zoo.errors import RegistryError, WeightsError, ZooError
from zoo.hub import _fetch
from zoo.hub.registry import default_path, get_registry, load_registry

HASH = "sha256:" + "ab" * 32
ENTRY = """
models:
  mynet:
    builder: zoo.models.unet:unet
    config: {{filters: 4, depth: 2, dropout: 0.0}}
    task: segmentation
    spatial_dims: [2]
    params: 10
{extra}"""


def registry(tmp_path, extra="", text=None, name="reg.yaml"):
    path = tmp_path / name
    path.write_text(text if text is not None else ENTRY.format(extra=textwrap.indent(textwrap.dedent(extra), "    ")))
    return path


def refused(path, match):
    with pytest.raises(RegistryError, match=match) as info:
        load_registry([path])
    return str(info.value)


# --------------------------------------------------------------------------- 2. registered builders only
def test_2_only_registered_builders_can_be_named(tmp_path, monkeypatch):
    target = tmp_path / "written.json"
    path = registry(tmp_path, text=f"""
models:
  mynet:
    builder: zoo.train._runs:_write_json
    config: {{path: {str(target)!r}, data: 1}}
    task: segmentation
    spatial_dims: [2]
    params: 10
""")
    msg = refused(path, r"builder .*'zoo.train._runs:_write_json'; expected 'zoo.models.<family>:<builder>'")
    assert "registered" in msg
    # inside zoo.models but not a builder: refused when resolved, before anything is called
    path = registry(
        tmp_path, text=ENTRY.replace("zoo.models.unet:unet", "zoo.models.layers:conv_norm_act").format(extra="")
    )
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    with pytest.raises(RegistryError, match=r"'zoo.models.layers:conv_norm_act' is not a registered builder.*"
                                            r"registered builders: .*zoo.models.unet:unet"):
        zoo.load("mynet")
    assert not target.exists()
    from zoo.models import BUILDERS
    assert len(BUILDERS) >= 9 and all(k.startswith("zoo.models.") for k in BUILDERS)


@pytest.mark.parametrize("where,extra", [("config", "config: {filters: 4, depthh: 2}"),
                                         ("reference", "reference: {num_clases: 3}"),
                                         ("sweep.config", "sweep: {config: {filterz: 2}}"),
                                         ("weights 'w' config", f"weights: {{w: {{url: w.npz, hash: '{HASH}', "
                                                                "config: {filterz: 4}}}")])
def test_2_config_keys_must_be_builder_keywords(tmp_path, monkeypatch, where, extra):
    text = ENTRY.format(extra="    " + extra + "\n")
    if where == "config":
        text = text.replace("    config: {filters: 4, depth: 2, dropout: 0.0}\n", "")
    monkeypatch.setenv("ZOO_REGISTRY", str(registry(tmp_path, text=text)))
    with pytest.raises(RegistryError) as info:  # a ZooError, never the builder's TypeError
        zoo.load("mynet")
    assert f"{where} has" in str(info.value) and "is not a keyword argument of zoo.models.unet:unet" in str(info.value)
    assert "Did you mean" in str(info.value)


def test_2_missing_module_is_a_registry_error(tmp_path, monkeypatch):
    path = registry(tmp_path, text=ENTRY.replace("zoo.models.unet:unet", "zoo.models.nosuch:net").format(extra=""))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    with pytest.raises(RegistryError, match="the zoo has no module zoo.models.nosuch"):
        zoo.load("mynet")


# --------------------------------------------------------------------------- 5. hangs and blow-ups
def _run(code, env=None, timeout=120):
    start = time.monotonic()
    proc = run_python(code, env=env, timeout=timeout)
    return proc, time.monotonic() - start


@pytest.mark.slow  # measured 5.1 s in the quick tier
def test_5_huge_depth_is_refused_before_building(tmp_path):
    path = registry(tmp_path, text=ENTRY.format(extra="").replace("depth: 2", "depth: 1000000"))
    code = ("import zoo\ntry:\n    zoo.load('mynet')\nexcept zoo.ZooError as e:\n    print('ZooError', e)")
    proc, _ = _run(code, {"ZOO_REGISTRY": str(path)})
    assert "ZooError unet: depth=1000000 must be an integer >= 1 and <= 10" in proc.stdout, proc.stderr
    for name, kw, arg in [("unet", {"filters": 10 ** 9}, "filters"),
                          ("resnet18", {"num_classes": 10 ** 12}, "num_classes"),
                          ("wgan", {"image_size": 2 ** 40}, "image_size"), ("unet3d", {"filters": 2048}, "too wide")]:
        with pytest.raises(ZooError, match=arg):
            zoo.load(name, **kw)


def test_5_fifo_registry_does_not_block(tmp_path):
    fifo = tmp_path / "reg.yaml"
    os.mkfifo(fifo)
    code = ("import zoo\ntry:\n    zoo.list_models()\nexcept zoo.ZooError as e:\n    print('ZooError', e)")
    proc, _ = _run(code, {"ZOO_REGISTRY": str(fifo)}, timeout=60)  # a blocked read would time out
    assert "is a FIFO (named pipe); a YAML file must be a regular file" in proc.stdout, proc.stderr


def test_5_alias_bomb_is_refused_without_expanding(tmp_path):
    bomb = "    config:\n      filters: 4\n      depth: 2\n      x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"      x{i}: &a{i} [{', '.join(['*a%d' % (i - 1)] * 10)}]\n" for i in range(1, 9)
    )
    text = ENTRY.format(extra="").replace("    config: {filters: 4, depth: 2, dropout: 0.0}\n", bomb)
    path = registry(tmp_path, text=text)
    assert path.stat().st_size < 2000  # expands to 10**9 values
    code = ("import tracemalloc\ntracemalloc.start()\nfrom zoo.hub.registry import load_registry\n"
            f"from zoo.errors import ZooError\ntry:\n    load_registry([{str(path)!r}])\nexcept ZooError as e:\n"
            "    print(e)\nprint('peak_bytes', tracemalloc.get_traced_memory()[1])")
    proc, _ = _run(code)
    assert "expands to more than 200,000 values once its YAML aliases" in proc.stdout, proc.stderr
    assert int(proc.stdout.split("peak_bytes")[1]) < 50 * 2 ** 20, proc.stdout  # not the 1.6 GB of the issue


def test_5_deep_nesting_is_refused(tmp_path):
    path = registry(tmp_path, text=ENTRY.format(extra="paper: " + "[" * 100000 + "]" * 100000 + "\n"))
    refused(path, r"nested more than 24 levels deep")


# --------------------------------------------------------------------------- 8. raw exceptions in the registry
@pytest.mark.parametrize(
    "text,match",
    [
        ("models: [a, b]\n", r"models \(the models: section\) is a list of 2 item\(s\); expected a mapping"),
        ("models:\n  mynet: null\n", r"entry 'mynet' is null \(empty\); expected a model entry"),
        ("models:\n  mynet: resnet\n", r"entry 'mynet' is the string 'resnet'; expected a model entry"),
        ("- 1\n", r"reg.yaml is a list of 1 item\(s\); expected a mapping with keys models"),
        (ENTRY.format(extra="").replace("mynet", "123"), r"line 3: the key 123 is not a string"),
        ("models:\n  ? [1, 2]\n  : x\n", r"line 2: the key a list is not a string"),
        (
            ENTRY.format(extra="    weights: {w: {url: 5, hash: '%s'}}" % HASH),
            r"url .* is 5; expected a non-empty string",
        ),
        (
            ENTRY.format(extra="    reference: {filters: 99999999999999999999999}"),
            r"reference.filters is an integer of about 24 digits, beyond \+-2147483647",
        ),
        (ENTRY.format(extra="    reference: {filters: 1%s}" % ("0" * 5000)), r"line 9: an integer of 5001 digits"),
    ],
)
def test_8_malformed_registry_is_a_registry_error(tmp_path, text, match):
    refused(registry(tmp_path, text=text), match)


def test_8_integer_model_name_does_not_break_list_models(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_REGISTRY", str(registry(tmp_path, text=ENTRY.format(extra="").replace("mynet", "7"))))
    with pytest.raises(RegistryError, match="the key 7 is not a string"):
        zoo.list_models()


def test_8_non_utf8_names_the_byte_and_line(tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_bytes(ENTRY.format(extra="paper: caf\xe9").encode("latin-1"))
    refused(path, r"is not UTF-8 text: byte 0xe9 at line 9")


@pytest.mark.parametrize("size", ["abc", ".nan", ".inf", "-1", "true", "1.5"])
def test_8_bad_size_is_refused_and_leaves_no_partial_download(tmp_path, size, isolated_home):
    refused(
        registry(tmp_path, extra=f"weights: {{w: {{url: 'https://x.org/w.npz', hash: '{HASH}', size: {size}}}}}"),
        r"size \(file size in bytes\) is .*expected an integer from 1",
    )
    source = tmp_path / "w.npz"
    source.write_bytes(b"data")
    with pytest.raises(WeightsError, match="must be a byte count"):  # the fetcher checks it too, first
        _fetch.fetch(source.as_uri(), size="abc")
    assert not isolated_home.exists() or not any(isolated_home.rglob("*.part"))


# --------------------------------------------------------------------------- 9. fields of the wrong type
@pytest.mark.parametrize(
    "extra,match",
    [
        ("trainable_params: true", r"trainable_params \(.*\) is true \(a boolean\); expected an integer"),
        (
            "input: {size: -32}",
            r"input: size \(reference input size per spatial axis\) is -32; expected an integer from 1",
        ),
        (
            f"weights: {{w: {{url: w.npz, hash: '{HASH}', preprocessing: zscore}}}}",
            r"preprocessing .* is the string 'zscore'; expected a mapping",
        ),
        (
            f"weights: {{w: {{url: w.npz, hash: '{HASH}', in_channels: 0}}}}",
            r"in_channels .* is 0; expected an integer from 1",
        ),
        ("paper: 2015", r"paper .* is 2015; expected a non-empty string"),
        (
            f"weights: {{w: {{url: w.npz, hash: '{HASH}', license: [a]}}}}",
            r"license .* is a list of 1 item\(s\); expected a non-empty string",
        ),
        ("notes: {a: b}", r"notes .* is a mapping of 1 key\(s\); expected a string or a list of strings"),
    ],
)
def test_9_fields_are_typed(tmp_path, extra, match):
    refused(registry(tmp_path, extra=extra), match)


def test_9_params_true_is_not_an_integer(tmp_path):
    refused(registry(tmp_path, text=ENTRY.format(extra="").replace("params: 10", "params: true")),
            r"params \(Keras total parameter count at the reference config \(required in the zoo's registry, "
            r"optional in a user's file\)\) is true \(a boolean\); expected an integer")


@pytest.mark.parametrize("name,char", [('"my\\u200bnet"', "U+200B"), ('"my\\u202enet"', "U+202E"),
                                       ('"a\\nb"', "U+000A")])
def test_9_names_with_invisible_characters_are_refused(tmp_path, name, char):
    refused(registry(tmp_path, text=ENTRY.format(extra="").replace("mynet", name)),
            f"invisible or control character {re.escape(char)}")


@pytest.mark.parametrize("name", ["'../evil'", "'a/b'", "'my net'", "'-x'"])
def test_9_names_follow_a_plain_pattern(tmp_path, name):
    refused(registry(tmp_path, text=ENTRY.format(extra="").replace("mynet", name)),
            r"expected a name of 1-64 ASCII letters")


def test_9_valid_variants_still_load(tmp_path):
    path = registry(tmp_path, extra=f"""\
        notes: [first line, second line]
        input: {{channels: 1, size: 16}}
        weights:
          w.v1: {{url: w.npz, hash: '{HASH}', size: 10, labels: [a, b], preprocessing: {{mode: zscore}}}}
        """)
    entry = load_registry([default_path(), path]).models["mynet"]
    assert entry.notes == "first line second line" and entry.weights["w.v1"].size == 10
    merged = registry(tmp_path, name="merge.yaml", text="""
models:
  base_net: &base
    builder: zoo.models.unet:unet
    task: segmentation
    spatial_dims: [2]
    params: 10
  wide_net:
    <<: *base
    config: {filters: 8}
""")  # YAML merge keys and aliases within the limits are fine
    reg = load_registry([merged])
    assert reg.models["wide_net"].task == "segmentation" and dict(reg.models["wide_net"].config) == {"filters": 8}


# --------------------------------------------------------------------------- 10. messages
def test_10_duplicate_key_error_names_the_file(tmp_path):
    msg = refused(registry(tmp_path, extra="task: classification"), r"duplicate key 'task'")
    assert str(tmp_path / "reg.yaml") in msg and "<unicode string>" not in msg
    bad = registry(tmp_path, text="models:\n  a: [\x07]\n")
    msg = refused(bad, "not valid YAML")
    assert str(bad) in msg and "<unicode string>" not in msg


def test_10_quoted_spatial_dims_says_what_is_wrong(tmp_path):
    msg = refused(registry(tmp_path, extra=f"weights: {{w: {{url: w.npz, hash: '{HASH}', spatial_dims: '2'}}}}"),
                  r"spatial_dims .* is the string '2'; expected one of 1, 2, 3. Write 2 without quotes")
    assert "is 2D but" not in msg


def test_builtin_registry_passes_the_schema():
    reg = get_registry(reload=True)
    assert len(reg.models) >= 30
    for entry in reg.models.values():
        entry.check_keywords(entry.resolve_builder())
    assert json.dumps(zoo.info("resnet50"))  # still plain data


def test_recipe_names_may_chain_with_plus_but_nothing_else(tmp_path):
    """A chain recipe (prune_80+qat_int8) is a valid name in both the recipes: section and an
    entry's recipes: list; a name with a space or a dangling '+' is refused with the rule."""
    ok = registry(tmp_path, text=ENTRY.format(extra="    recipes: [mine+qat_int8]\n") +
                  "recipes:\n  mine+qat_int8: {kind: chain, steps: [prune_50, qat_int8]}\n")
    reg = load_registry([default_path(), ok])
    assert reg.models["mynet"].recipes == ("mine+qat_int8",) and "mine+qat_int8" in reg.recipes
    for bad in ("prune 80", "prune_80+"):
        path = registry(tmp_path, text=ENTRY.format(extra="\n") + f"recipes:\n  '{bad}': {{kind: prune}}\n",
                        name="bad.yaml")
        assert "names joined by '+'" in refused(path, "recipe name")
