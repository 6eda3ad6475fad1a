"""The pytest plugin, run as users run it: pytest in a subprocess on a test file of theirs."""

from __future__ import annotations

import re
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memtracker_web.pytest_plugin import MAX_WARMUP, _count
from support import requires_engine, without_engine

pytest_plugins = ["pytester"]

ORDERS = """
import pytest

class Order:
    def __init__(self, n=0):
        self.n = n

HOARD = []
_cache = {}

def make_order(n):
    return Order(n)                                   # MAKE-SITE

def leaky(n):
    HOARD.append(make_order(n))                        # LEAKY-SITE

def cached():
    if "order" not in _cache:
        _cache["order"] = Order()                      # CACHE-SITE
    return _cache["order"]
"""


def line(source: str, marker: str) -> int:
    return next(i for i, text in enumerate(source.splitlines(), 1) if f"# {marker}" in text)


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", *args)


def write(pytester: pytest.Pytester, tests: str, name: str = "test_shop") -> str:
    path = pytester.makepyfile(**{name: ORDERS + textwrap.dedent(tests)})
    return path.read_text()  # as written: line numbers are the file's


def failure_text(result: pytest.RunResult) -> str:
    return "\n".join(result.outlines)


@requires_engine
def test_a_leaking_test_fails_with_the_type_the_count_and_the_line(pytester):
    source = write(
        pytester,
        """
        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_checkout():
            for i in range(3):
                leaky(i)                               # TEST-SITE
            [Order(i) for i in range(50)]              # dies at once: not a leak
    """,
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    text = failure_text(result)
    assert "memtracker: 3 objects of test_shop.Order made by the test outlived it (allowed: 0)" in text
    # the path: the allocation line first, then up to the test's own line, marked
    path = [
        f"test_shop.py:{line(source, 'MAKE-SITE')} in make_order",
        f"test_shop.py:{line(source, 'LEAKY-SITE')} in leaky",
        f"test_shop.py:{line(source, 'TEST-SITE')} in test_checkout",
    ]
    body = text.split("outlived it (allowed: 0)\n")[1].splitlines()
    assert body[:4] == [
        "  where (live objects, then the line in your code that made them):",
        f"         3  {path[0]}",
        f"            called from {path[1]}",
        f"                   from {path[2]}",
    ]
    assert body[4].startswith("====")
    assert "_pytest" not in text.split("outlived it")[1]  # pytest's own frames above the test are cut


@requires_engine
def test_a_clean_test_passes_and_the_plugin_stays_off_unless_asked(pytester):
    write(
        pytester,
        """
        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_clean():
            orders = [Order(i) for i in range(100)]
            assert len(orders) == 100

        def test_unmarked_leak_is_not_checked():
            leaky(1)
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    assert "memtracker" not in result.stdout.str()


@requires_engine
def test_allow_lets_that_many_survive(pytester):
    write(
        pytester,
        """
        @pytest.mark.memtracker_no_leaks(types=[Order], allow=2)
        def test_two_allowed():
            leaky(1); leaky(2)

        @pytest.mark.memtracker_no_leaks(types=[Order], allow=2)
        def test_three_are_too_many():
            leaky(1); leaky(2); leaky(3)
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert "3 objects of test_shop.Order made by the test outlived it (allowed: 2)" in result.stdout.str()


@requires_engine
def test_warmup_keeps_a_lazily_filled_cache_from_failing(pytester):
    source = write(
        pytester,
        """
        CALLS = []

        @pytest.mark.memtracker_no_leaks(types=[Order], warmup=1)
        def test_warm():
            CALLS.append("warm")
            cached()

        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_cold():
            _cache.clear()
            cached()

        def test_warm_ran_twice():
            assert CALLS == ["warm", "warm"]
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*_ test_cold _*", "memtracker: 1 object of test_shop.Order made by the test*"])
    assert f"1  test_shop.py:{line(source, 'CACHE-SITE')} in cached" in result.stdout.str()


@requires_engine
def test_the_switch_checks_every_test_for_the_named_classes(pytester):
    write(
        pytester,
        """
        def test_leaks():
            leaky(1)

        def test_clean():
            Order()

        def test_other_class_is_not_checked():
            HOARD.append(object())
    """,
    )
    pytester.syspathinsert()
    result = run(pytester, "--memtracker-leaks", "--memtracker-type", "test_shop.Order")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*_ test_leaks _*", "memtracker: 1 object of test_shop.Order made by the test*"])
    # the same from the ini file
    pytester.makeini("[pytest]\nmemtracker_types =\n    test_shop.Order\n")
    again = run(pytester, "--memtracker-leaks")
    again.assert_outcomes(passed=2, failed=1)


@requires_engine
def test_watch_all_finds_a_class_nobody_named_and_a_one_off_is_not_a_leak(pytester):
    source = write(
        pytester,
        """
        class Node:
            pass

        KEEP = []
        SEEN = {}

        def test_leaks_nodes():
            KEEP.append(Node())                        # NODE-SITE

        def test_fills_a_cache_once():
            SEEN.setdefault("node", Node())            # the second run finds it filled

        def test_builtins_are_left_to_named_checks():
            KEEP.append({"a": 1})
    """,
    )
    result = run(pytester, "--memtracker-leaks", "--memtracker-watch-all")
    result.assert_outcomes(passed=2, failed=1)
    text = result.stdout.str()
    assert "memtracker: 1 object of test_shop.Node made by a second run of the test outlived it" in text
    assert f"1  test_shop.py:{line(source, 'NODE-SITE')} in test_leaks_nodes" in text


@requires_engine
def test_watch_all_says_so_when_the_second_run_raises(pytester):
    write(
        pytester,
        """
        class Node:
            pass

        KEEP = []

        @pytest.mark.memtracker_no_leaks(watch_all=True)
        def test_runs_once_only():
            assert not KEEP, "second run"
            KEEP.append(Node())
    """,
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            (
                "memtracker: test_shop.Node grew by 1 during the test (watch-all); running the test again to find "
                "where they are made failed (call failed: test_shop.py:*: AssertionError), so there are no call paths"
            )
        ]
    )
    assert [text for text in result.outlines if text.startswith("memtracker: ")] == [
        text for text in result.outlines if "test_shop.Node grew by 1" in text and text.startswith("memtracker")
    ]


@requires_engine
def test_a_test_that_fails_on_its_own_shows_its_own_failure(pytester):
    write(
        pytester,
        """
        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_broken():
            leaky(1)
            assert 1 == 2, "the test's own failure"
    """,
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    assert "the test's own failure" in result.stdout.str()
    assert "outlived" not in result.stdout.str()


@requires_engine
def test_the_fixture_counts_from_track_and_fails_with_the_paths(pytester):
    source = write(
        pytester,
        """
        def test_fixture(memtracker):
            warm = cached()
            memtracker.track(Order)
            one = Order()
            assert memtracker.live(Order) == 1
            memtracker.assert_live(Order, 1)
            del one
            memtracker.assert_no_growth(Order)
            leaky(1)                                   # FIXTURE-SITE
            memtracker.assert_no_growth(Order, allow=1)
            memtracker.assert_no_growth(Order)

        def test_assert_live_says_what_it_saw(memtracker):
            memtracker.track(Order)
            kept = [Order(), Order()]
            memtracker.assert_live(Order, 3)

        def test_misuse(memtracker):
            with pytest.raises(TypeError, match="needs classes, got int object"):
                memtracker.track(3)
            with pytest.raises(ValueError, match=r"call memtracker.track\\(Order\\) first"):
                memtracker.assert_no_growth(Order)
            memtracker.track(Order)
            with pytest.raises(ValueError, match=r"assert_no_growth\\(allow=\\) must be a whole number"):
                memtracker.assert_no_growth(Order, allow=-1)
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    assert "memtracker: 1 object of test_shop.Order made by the test outlived it (allowed: 0)" in text
    assert f"   from test_shop.py:{line(source, 'FIXTURE-SITE')} in test_fixture" in text
    assert "memtracker: 2 objects of test_shop.Order made since track() are alive, expected 3" in text


@requires_engine
def test_an_async_task_that_never_ends_is_found(pytester):
    source = write(
        pytester,
        """
        import asyncio

        TASKS = []

        async def spawn():
            async def forever():
                order = Order()                        # TASK-SITE
                await asyncio.Event().wait()
            TASKS.append(asyncio.get_running_loop().create_task(forever()))
            await asyncio.sleep(0)

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        @pytest.mark.memtracker_no_leaks(types=[Order], warmup=2)
        async def test_task_leak():
            await spawn()

        @pytest.mark.anyio
        @pytest.mark.memtracker_no_leaks(types=[Order])
        async def test_async_clean():
            Order()
            await asyncio.sleep(0)
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert "1 object of test_shop.Order made by the test outlived it" in result.stdout.str()
    assert f"1  test_shop.py:{line(source, 'TASK-SITE')} in spawn.<locals>.forever" in result.stdout.str()


@requires_engine
def test_each_xdist_worker_checks_its_own_tests(pytester):
    write(
        pytester,
        "\n".join(
            f"""
@pytest.mark.memtracker_no_leaks(types=[Order])
def test_leaks_{i}():
    for _ in range({i + 1}):
        leaky(0)

@pytest.mark.memtracker_no_leaks(types=[Order])
def test_clean_{i}():
    Order()
"""
            for i in range(4)
        ),
    )
    result = run(pytester, "-p", "xdist", "-n", "2")
    result.assert_outcomes(passed=4, failed=4)
    text = result.stdout.str()
    workers = set()
    for i in range(4):
        noun = "object" if i == 0 else "objects"
        found = re.search(
            rf"_ test_leaks_{i} _+\n\[(gw\d)\] .*\n"
            rf"memtracker: {i + 1} {noun} of test_shop\.Order made by the test outlived it",
            text,
        )
        assert found, text
        workers.add(found.group(1))
    assert workers == {"gw0", "gw1"} or len(workers) == 1  # xdist picks the split; each one checked its own


@pytest.mark.parametrize(
    "args, message",
    [
        (["--memtracker-leaks"], "--memtracker-leaks needs classes to check"),
        (["--memtracker-leaks", "--memtracker-type", "no.such.Thing"], "no class named 'no.such.Thing' could be found"),
        (["--memtracker-leaks", "--memtracker-type", "os.path"], "'os.path' is a module, not a class"),
        (["--memtracker-warmup", "two"], "--memtracker-warmup / memtracker_warmup must be a whole number"),
        (["--memtracker-warmup", "100000"], "must be at most 1000, got 100000"),
        (["--memtracker-allow", "-1"], "--memtracker-allow / memtracker_allow must be a whole number"),
        (["--memtracker-allow", "١"], "must be a whole number of 0 or more, got '١'"),
    ],
)
def test_bad_options_are_usage_errors_that_name_the_option(pytester, args, message):
    write(pytester, "def test_any():\n    pass\n")
    result = run(pytester, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


@requires_engine
@pytest.mark.parametrize(
    "marker, message",
    [
        ("memtracker_no_leaks()", "needs classes to check (e.g. memtracker_no_leaks(types=[Order])) or watch_all=True"),
        ("memtracker_no_leaks(types=[Order], allwo=1)", "unknown argument(s) allwo"),
        ("memtracker_no_leaks(types=[Order], warmup=-1)", "(warmup=) must be a whole number of 0 or more, got -1"),
        ("memtracker_no_leaks(types=[Order], allow='x')", "(allow=) must be a whole number of 0 or more, got 'x'"),
        ("memtracker_no_leaks(types=['no.such.Thing'])", "no class named 'no.such.Thing' could be found"),
        ("memtracker_no_leaks(types=[3])", "3 is neither a class nor a dotted name"),
    ],
)
def test_a_bad_marker_fails_its_test_with_what_is_wrong(pytester, marker, message):
    write(
        pytester,
        f"""
        @pytest.mark.{marker}
        def test_marked():
            pass
    """,
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    assert message in result.stdout.str()
    assert "pytest_plugin.py" not in result.stdout.str()  # the message alone, no traceback of ours


@without_engine
def test_without_the_engine_the_tests_run_and_one_line_says_why(pytester):
    write(
        pytester,
        """
        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_one():
            leaky(1)

        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_two():
            pass

        def test_fixture(memtracker):
            memtracker.track(Order)
    """,
    )
    result = run(pytester, "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    lines = [text for text in result.outlines if text.startswith("memtracker: ")]
    assert len(lines) == 1
    assert re.fullmatch(
        r"memtracker: 2 leak checks not run \(the tests ran\): CPython 3\.\d+\.\d+: .*3\.13\.3.*", lines[0]
    ), lines
    strict = run(pytester, "--memtracker-strict")
    strict.assert_outcomes(failed=3)
    strict.stdout.fnmatch_lines(["*_ test_one _*", "memtracker: leak check cannot run on CPython 3.*"])
    assert any(
        re.fullmatch(r"SKIPPED \[1\] test_shop\.py:\d+: memtracker: leak checks cannot run on .*", text)
        for text in result.outlines
    ), result.outlines  # the skip is placed at the test


@requires_engine
def test_objects_a_library_makes_are_shown_at_the_line_of_yours_that_called_it(pytester):
    source = write(
        pytester,
        """
        import json

        PARSED = []

        @pytest.mark.memtracker_no_leaks(types=[dict])
        def test_keeps_parsed_json():
            for text in ['{"a": 1}', '{"b": 2}']:
                PARSED.append(json.loads(text))            # JSON-SITE
            [json.loads("{}") for _ in range(100)]         # freed at once

        @pytest.mark.memtracker_no_leaks(types=[dict, list])
        def test_builtins_clean():
            [json.loads('{"a": [1]}') for _ in range(100)]
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    assert "memtracker: 2 objects of builtins.dict made by the test outlived it (allowed: 0)" in text
    body = text.split("outlived it (allowed: 0)\n")[1].splitlines()
    assert body[1] == f"         2  test_shop.py:{line(source, 'JSON-SITE')} in test_keeps_parsed_json"
    assert re.fullmatch(r" {12}allocated in json/decoder\.py:\d+ in JSONDecoder\.raw_decode", body[2]), body
    assert body[3].startswith("            via json/")


@given(st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.booleans(), st.none()))
def test_a_count_option_is_a_whole_number_or_an_error_that_names_it(value):
    try:
        parsed = _count("--memtracker-warmup", value, MAX_WARMUP)
    except pytest.UsageError as exc:
        assert str(exc).startswith("--memtracker-warmup must be ")
        return
    assert isinstance(parsed, int) and not isinstance(parsed, bool) and 0 <= parsed <= MAX_WARMUP
    assert parsed == (int(value.strip()) if isinstance(value, str) else value)


@requires_engine
def test_each_run_has_its_own_fixtures_and_what_they_keep_until_teardown_is_no_leak(pytester):
    write(
        pytester,
        """
        SETUPS = {"module": 0, "function": 0}

        @pytest.fixture(scope="module")
        def shop():
            SETUPS["module"] += 1
            return [Order() for _ in range(3)]           # made before the test: not its objects

        @pytest.fixture
        def registry():
            SETUPS["function"] += 1
            kept = []
            yield kept
            kept.clear()

        @pytest.mark.memtracker_no_leaks(types=[Order], warmup=2)
        def test_kept_only_by_fixtures(shop, registry, tmp_path, monkeypatch):
            registry.append(Order())
            monkeypatch.setattr("test_shop.HOARD", [Order()])
            (tmp_path / "made-once").touch(exist_ok=False)  # a fresh tmp_path each run

        def test_setups():
            assert SETUPS == {"module": 1, "function": 3}
            assert HOARD == []
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)


@requires_engine
def test_a_failing_warmup_run_is_reported_as_the_failure(pytester):
    write(
        pytester,
        """
        RUNS = []

        @pytest.mark.memtracker_no_leaks(types=[Order], warmup=3)
        def test_fails_on_second_call():
            RUNS.append(1)
            assert len(RUNS) < 2, "failed on call 2"
            leaky(1)

        def test_ran_twice():
            assert len(RUNS) == 2
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    assert "failed on call 2" in result.stdout.str()
    assert "outlived" not in result.stdout.str()


@requires_engine
def test_a_test_that_takes_the_tracer_loses_its_check_and_says_so(pytester):
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    write(
        pytester,
        """
        import tracemalloc

        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_traces_memory():
            tracemalloc.start()
            try:
                leaky(1)
            finally:
                tracemalloc.stop()

        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_after_it():
            leaky(2)
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_after_it _*",
            "memtracker: 1 object of test_shop.Order made by the test outlived it (allowed: 0)",
            "memtracker: 1 leak check lost (the tests passed):",
            (
                "  test_shop.py::test_traces_memory: another tool took CPython's reference tracer during the test "
                "(tracemalloc.start() does this), so its counts missed events"
            ),
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@requires_engine
def test_a_failing_warmup_still_tears_down_what_the_next_module_does_not_need(pytester):
    pytester.makepyfile(
        test_b="""
        def test_next_module():
            pass
    """
    )
    write(
        pytester,
        """
        EVENTS = []

        @pytest.fixture(scope="module")
        def module_thing():
            yield
            EVENTS.append("module teardown")

        @pytest.mark.memtracker_no_leaks(types=[Order], warmup=2)
        def test_fails_in_warmup(module_thing):
            assert False, "warm-up failure"
    """,
        name="test_a",
    )
    result = run(pytester, "test_a.py", "test_b.py")
    result.assert_outcomes(passed=1, failed=1)
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert "warm-up failure" in result.stdout.str()


@requires_engine
def test_reruns_show_one_run_s_output_and_set_up_shared_fixtures_once(pytester):
    write(
        pytester,
        """
        SETUPS = []

        @pytest.fixture(scope="module")
        def module_thing():
            SETUPS.append("setup")
            yield
            SETUPS.append("teardown")

        class Node:
            pass

        KEEP = []

        @pytest.mark.memtracker_no_leaks(types=[Order], warmup=2)
        def test_prints_and_leaks(module_thing):
            print("run output")
            leaky(1)

        @pytest.mark.memtracker_no_leaks(watch_all=True)
        def test_watch_all_runs_twice(module_thing):
            KEEP.append(Node())
    """,
        name="test_a",
    )
    pytester.makepyfile(
        test_b="""
        import test_a

        def test_module_fixture_set_up_and_torn_down_once():
            assert test_a.SETUPS == ["setup", "teardown"]
    """
    )
    result = run(pytester, "test_a.py", "test_b.py")
    result.assert_outcomes(passed=1, failed=2)
    assert result.stdout.str().count("run output") == 1
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@requires_engine
def test_xfail_and_skip_are_left_as_they_are(pytester):
    write(
        pytester,
        """
        @pytest.mark.xfail(reason="known")
        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_xpass_that_leaks():
            leaky(1)

        @pytest.mark.xfail(reason="known")
        @pytest.mark.memtracker_no_leaks(types=[Order])
        def test_xfail():
            leaky(1)
            assert False

        @pytest.mark.skip(reason="not today")
        def test_skipped():
            pass

        def test_last():
            pass
    """,
        name="test_a",
    )
    pytester.makepyfile(test_b="def test_other_module():\n    pass\n")
    result = run(
        pytester,
        "--memtracker-leaks",
        "--memtracker-type",
        "test_a.Order",
        "--memtracker-warmup",
        "1",
        "test_a.py",
        "test_b.py",
    )
    result.assert_outcomes(passed=2, skipped=1, xfailed=1, xpassed=1)
    assert result.ret == 0


@requires_engine
def test_bad_marker_values_fail_their_test_not_the_session(pytester):
    write(
        pytester,
        """
        @pytest.mark.memtracker_no_leaks(types=None, watch_all=True)
        def test_none():
            pass

        @pytest.mark.memtracker_no_leaks(types=[Order], watch_all="false")
        def test_string_flag():
            pass

        def test_fine():
            pass
    """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    assert "(types=) must be a list of classes or dotted names, got NoneType" in text
    assert "(watch_all=) must be True or False, got 'false'" in text
    assert "INTERNALERROR" not in text + result.stderr.str()


@requires_engine
def test_a_bad_class_name_under_xdist_stops_with_the_message(pytester):
    write(pytester, "def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    result = run(pytester, "-p", "xdist", "-n", "2", "--memtracker-leaks", "--memtracker-type", "nosuch.Thing")
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text
    assert "memtracker: --memtracker-type / memtracker_types: no class named 'nosuch.Thing' could be found" in text
    assert result.ret != 0


@without_engine
def test_without_the_engine_under_xdist_the_one_line_still_comes(pytester):
    write(
        pytester,
        "\n".join(
            f"""
@pytest.mark.memtracker_no_leaks(types=[Order])
def test_{i}():
    leaky({i})
"""
            for i in range(3)
        ),
    )
    result = run(pytester, "-p", "xdist", "-n", "2")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["memtracker: 3 leak checks not run (the tests ran): CPython 3.*"])
