"""Edge cases of the C engine found in review: each test failed (wrong counts or a
crash) before its fix. They drive CaptureCore directly where the public API
would hide the window."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import tracemalloc
import types
import weakref

import pytest

from memtracker_web import _tracker
from support import requires_engine


class Obj:
    pass


@requires_engine
def test_pruning_into_the_root_keeps_retained_counts_honest():
    c = _tracker.CaptureCore()
    c.track(Obj)
    c.start()
    try:
        c.analyse(Obj, depth=1, max_nodes=16)
        source = "def make(keep):\n" + "".join("    keep.append(Obj())\n" for _ in range(40))
        namespace = {"Obj": Obj}
        exec(source, namespace)
        keep: list = []
        namespace["make"](keep)
        nodes, meta = c.tree(Obj)  # prunes: 40 sites, 16 nodes
        assert sum(n[5] for n in nodes) == 40 == c.live(Obj)
        assert meta["pruned_nodes"] + meta["overflow"] > 0
        keep.clear()
        nodes, _ = c.tree(Obj)
        assert nodes[0][5] == 0 and sum(n[5] for n in nodes) == 0 and c.live(Obj) == 0
    finally:
        c.stop()


@requires_engine
def test_a_type_that_died_while_displaced_is_forgotten():
    def make():
        return type("Dead", (), {})

    a = _tracker.CaptureCore()
    dead = make()
    dead_id = id(dead)
    a.track(dead)
    a.start()
    b = None
    try:
        tracemalloc.start()  # displaces our tracer
        del dead
        gc.collect()  # its destruction is not seen
        tracemalloc.stop()
        keep = []
        reused = None
        for i in range(20000):  # a new class at the same address?
            cls = type(f"V{i}", (), {})
            if id(cls) == dead_id:
                reused = cls
                break
            keep.append(cls)
        b = _tracker.CaptureCore()
        b.track(int)
        b.start()  # re-installs; the dead slot must go
        if reused is not None:
            objs = [reused() for _ in range(100)]
            assert len(objs) == 100
        assert a.statistics()["tracked_objects"] == 0
        assert a.items() == []
    finally:
        a.stop()
        if b is not None:
            b.stop()


@requires_engine
def test_module_objects_changing_class_are_freed_in_both_directions():
    class M(types.ModuleType):
        pass

    c = _tracker.CaptureCore()
    c.track(types.ModuleType)
    c.start()
    try:
        m = types.ModuleType("x")
        m.__class__ = M
        del m
        gc.collect()
        assert c.live(types.ModuleType) == 0 and c.statistics()["tracked_objects"] == 0
    finally:
        c.stop()
    c = _tracker.CaptureCore()
    c.track(M)
    c.start()
    try:
        m = M("y")
        m.__class__ = types.ModuleType
        del m
        gc.collect()
        assert c.live(M) == 0 and c.counts(M) == (1, 1, 0)
    finally:
        c.stop()


@requires_engine
def test_track_reentered_from_a_metaclass_gets_its_own_slot():
    c = _tracker.CaptureCore()

    class Other:
        pass

    class Meta(type):
        def __getattribute__(cls, name):
            if name == "__module__" and type.__getattribute__(cls, "__name__") == "Outer":
                c.track(Other)  # while track(Outer) is running
            return type.__getattribute__(cls, name)

    class Outer(metaclass=Meta):
        pass

    c.track(Outer)
    assert c.slot_of(Other) is not None and c.slot_of(Outer) is not None
    assert c.slot_of(Other) != c.slot_of(Outer)
    c.start()
    try:
        objs = [Other() for _ in range(5)]
        assert c.live(Other) == 5
        del objs
    finally:
        c.stop()


@requires_engine
def test_queued_events_lose_leaves_of_a_replaced_tree():
    class X:
        pass

    def site_a():
        return X()

    def site_b():
        return X()

    c = _tracker.CaptureCore()
    c.track(X, callback=True)
    c.start()
    try:
        c.analyse(X, depth=1)
        a = site_a()  # queued with a leaf of the first tree
        c.analyse(X, depth=1)  # a fresh tree
        b = site_b()
        paths = [c.path_of(X, leaf) for slot, kind, seq, leaf in c.drain() if kind == 0]
        assert paths[0] is None  # not site_b's path
        assert paths[1][0][2].endswith("site_b")
        del a, b
    finally:
        c.stop()


@requires_engine
def test_tree_survives_a_code_weakref_callback_that_stops_analysis():
    c = _tracker.CaptureCore()
    c.track(Obj)
    c.start()
    refs = []
    fired = []

    def on_code_death(_):
        fired.append(1)
        c.unanalyse(Obj)

    try:
        c.analyse(Obj, depth=1, max_nodes=16)
        keep = []
        for i in range(15):
            namespace = {"Obj": Obj}
            exec(f"def f{i}():\n    return Obj()", namespace)
            f = namespace[f"f{i}"]
            obj = f()
            if i == 0:
                keep.append(obj)
            refs.append(weakref.ref(f.__code__, on_code_death))
            del f, namespace, obj
        gc.collect()
        result = c.tree(Obj)  # prunes; dropped codes call back
        assert result is not None and fired
        assert c.tree(Obj) is None  # the callback's unanalyse took effect
    finally:
        c.stop()


@requires_engine
def test_start_reentered_from_a_code_weakref_callback_registers_once():
    class X:
        pass

    c = _tracker.CaptureCore()
    c.track(X)
    c.start()
    c.analyse(X, depth=1)
    namespace = {"X": X}
    exec("def f():\n    return X()", namespace)
    o = namespace["f"]()
    fired = []
    ref = weakref.ref(namespace["f"].__code__, lambda _: (fired.append(1), c.start()))
    del namespace
    gc.collect()
    try:
        c.stop()
        c.start()  # frees the old tree: the callback starts us again
        assert fired and _tracker.engine_state()["running_captures"] == 1
        objs = [X() for _ in range(10)]
        assert c.counts(X) == (10, 0, 0)
        del objs, o, ref
    finally:
        c.stop()


@requires_engine
def test_tracking_after_a_type_died_while_displaced_does_not_touch_it():
    # the mark sync read the dead type (Py_TYPE, a weak reference, PyType_Watch): a crash
    code = textwrap.dedent("""
        import gc, tracemalloc
        from memtracker_web import _tracker
        class Other: pass
        a = _tracker.CaptureCore()
        dead = type("Dead", (), {})
        a.track(dead); a.start()
        tracemalloc.start()            # displaces our tracer
        del dead; gc.collect()         # freed, unseen
        tracemalloc.stop()
        a.track(Other)                 # a safe point that syncs the marks
        a.stop(); a.start()            # takes the tracer back
        keep = [Other() for _ in range(3)]
        print(a.live(Other))
        a.stop()
    """)
    proc = subprocess.run([sys.executable, "-X", "dev", "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "3"


@requires_engine
def test_a_hook_of_ours_from_an_earlier_mode_put_back_counts_as_displacement():
    # a tool saved (our count-only hook, its data) and restored it after we
    # switched to watch-all: watch counts went missing without a word
    import ctypes

    api = ctypes.pythonapi
    api.PyRefTracer_GetTracer.restype = ctypes.c_void_p
    api.PyRefTracer_GetTracer.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    api.PyRefTracer_SetTracer.restype = ctypes.c_int
    api.PyRefTracer_SetTracer.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

    class Tracked:
        pass

    class Probe:
        pass

    core = _tracker.CaptureCore()
    core.track(Tracked)
    core.start()
    try:
        data = ctypes.c_void_p()
        fn = api.PyRefTracer_GetTracer(ctypes.byref(data))
        api.PyRefTracer_SetTracer(None, None)  # a tool takes the slot
        _tracker.watch_start()  # ours again, in watch mode
        api.PyRefTracer_SetTracer(fn, data.value)  # the tool restores what it saw
        keep = [Probe() for _ in range(100)]
        with pytest.raises(RuntimeError, match="another tool replaced the reference tracer"):
            _tracker.watch_counts()
        assert _tracker.engine_state()["displaced"] is True
        assert core.missed_events is True
        _tracker.watch_stop()
        _tracker.watch_start()  # takes the slot back with the current hook
        assert _tracker.engine_state()["displaced"] is False
        keep += [Probe() for _ in range(100)]
        rows = {t: (n, f) for t, n, f in _tracker.watch_counts()}
        assert rows[Probe] == (100, 0)
        del keep
    finally:
        _tracker.watch_stop()
        core.stop()
