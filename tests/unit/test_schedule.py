"""make book as one schedule: the plan's dependencies, the zoo's members as tasks, the critical path
and the projection to other core counts."""
import pytest

from wmlib import report, schedule, zoo
from wmlib.schedule import Task


def test_the_plan_trains_every_zoo_member_before_the_chapters_and_orders_the_late_chapters():
    steps = schedule.plan("smoke", cores=2)
    by = {s.name: s for s in steps}
    members = [s for s in steps if s.kind == "zoo"]
    # the shared zoo of Fashion-MNIST (the chapters) and of the MNIST subset (their digits runs), each member once
    want = {(d, a, s) for d in ("fashion-mnist", "mnist-5k") for a, s in zoo.members(zoo.zoo_recipe(d, "smoke"))}
    assert {(m.args["dataset"], m.args["arch"], m.args["s"]) for m in members} == want and len(members) == len(want)
    chapters = [n for n in by if n.endswith(".ipynb") and n not in schedule.LATE]
    assert len(chapters) == 5 and all(set(by[n].after) == {m.name for m in members} for n in chapters)
    assert set(by["comparison.ipynb"].after) == set(chapters) and by["comparison.ipynb"].cpus == 0
    assert by["integrity.ipynb"].after == ("comparison.ipynb",) and by["integrity.ipynb"].threads == 2
    assert {s.threads for s in steps if s.name != "integrity.ipynb"} == {1}  # one thread a step, a core each
    assert all(s.cpus == s.threads for s in steps if s.name != "comparison.ipynb")
    assert {s.threads for s in schedule.plan("smoke", cores=1)} == {1}  # no step holds more cores than the cluster has
    names = [s.name for s in steps]
    assert all(names.index(a) < names.index(s.name) for s in steps for a in s.after)  # submitted after what it waits for


def test_the_plan_puts_the_longest_chapter_first():
    steps = schedule.plan("smoke", cores=2, previous={"zhang2018.ipynb": 900.0, "li2019.ipynb": 300.0})
    chapters = [s.name for s in steps if s.kind == "notebook"]
    assert chapters[:2] == ["zhang2018.ipynb", "li2019.ipynb"] and chapters[-2:] == list(schedule.LATE)
    zoo = [s.name for s in steps if s.kind == "zoo"]
    slow = [s.name for s in schedule.plan("smoke", cores=2) if s.kind == "zoo"][-1]
    again = [s.name for s in schedule.plan("smoke", cores=2, previous={slow: 170.0}) if s.kind == "zoo"]
    assert zoo[0] != slow and again[0] == slow and sorted(again) == sorted(zoo)  # the slowest member of the last build first
    first = [s.name for s in schedule.plan("smoke", cores=2) if s.kind == "notebook"]  # no record yet: the measured order
    assert first[:5] == sorted(schedule.FIRST_BUILD, key=lambda n: -schedule.FIRST_BUILD[n])


def test_a_member_outside_the_recipe_is_refused():
    with pytest.raises(ValueError, match="not a member"):
        zoo.train_member("fashion-mnist", "smoke", "vgg11", 0)


def test_one_member_matches_its_zoo_sibling_in_data_recipe_and_cache_tag(monkeypatch):
    calls = []

    def fake(tag, arch, splits, cfg, **kw):
        calls.append((tag, arch, splits.owner.x.float().sum().item(), len(splits.owner), len(splits.test), cfg))
        import torch
        return torch.nn.Linear(1, 1), None, None
    monkeypatch.setattr(zoo, "train_classifier", fake)
    monkeypatch.setattr(zoo, "evaluate", lambda *a, **kw: 0.5)
    monkeypatch.setattr(zoo, "model_digest", lambda m: "d")
    zoo.Zoo.shared("fashion-mnist", "smoke", progress=False)
    together = {c[0]: c for c in calls}
    calls.clear()
    for arch, s in zoo.members(zoo.zoo_recipe("fashion-mnist", "smoke")):
        zoo.train_member("fashion-mnist", "smoke", arch, s)
    assert {c[0]: c for c in calls} == together  # same tags, images, test split and TrainConfig


def test_critical_path_and_projection_on_a_small_graph():
    ts = [Task("a", 10), Task("b", 30), Task("c", 20, after=("a",)), Task("d", 5, after=("b", "c"))]
    assert schedule.critical_path(ts) == (35.0, ["b", "d"])
    assert schedule.project(ts, 1) == 65.0          # all work on one core
    assert schedule.project(ts, 2) == 35.0          # b beside a -> c, then d: the critical path
    assert schedule.project(ts, 16) == 35.0         # more cores cannot beat the longest chain
    wide = [Task("x", 10, cpus=2), Task("y", 10), Task("z", 10)]
    assert schedule.project(wide, 2) == 20.0        # a 2-core task shares the machine with nothing
    assert schedule.project(wide, 3) == 20.0        # x and one 1-core task, then the other
    assert schedule.project([Task("y", 10), Task("x", 10, cpus=2)], 2) == 20.0  # x waits for the core y holds
    assert schedule.project(wide, 1) == 30.0        # capped at the cores there are
    with pytest.raises(ValueError, match="cycle"):
        schedule.project([Task("p", 1, after=("q",))], 2)


def _record(cells=True):
    t = 1000.0
    steps = [dict(name="zoo fashion-mnist lenet1-s0", kind="zoo", after=[], threads=1, cpus=1.0, start=t, end=t + 60),
             dict(name="zoo fashion-mnist lenet1-s1", kind="zoo", after=[], threads=1, cpus=1.0, start=t, end=t + 40),
             dict(name="a.ipynb", kind="notebook", after=["zoo fashion-mnist lenet1-s0", "zoo fashion-mnist lenet1-s1"],
                  threads=1, cpus=1.0, start=t + 60, end=t + 360),
             dict(name="b.ipynb", kind="notebook", after=["zoo fashion-mnist lenet1-s0", "zoo fashion-mnist lenet1-s1"],
                  threads=1, cpus=1.0, start=t + 60, end=t + 60, kept=True),
             dict(name="comparison.ipynb", kind="notebook", after=["a.ipynb", "b.ipynb"], threads=1, cpus=0.0,
                  start=t + 360, end=t + 600)]
    cl = [{"cell": "e / seed 0 / none", "batch": t + 370, "done_at": t + 470, "seconds": 100.0},
          {"cell": "e / seed 1 / none", "batch": t + 370, "done_at": t + 450, "seconds": 80.0},
          {"cell": "e / seed 0 / prune", "batch": t + 470, "done_at": t + 590, "seconds": 120.0}]
    return {"profile": "default", "cores": 2, "start": t, "end": t + 600, "models_before": 0, "steps": steps,
            "cells": cl if cells else []}


def test_a_cell_run_again_in_a_later_batch_is_a_task_of_its_own():
    """The reference thief's sweep reruns the unattacked cells (loaded from their saved results) in a batch of its
    own: the projection needs one task per run (the cold build of e26bf0a stopped at its summary with a KeyError)."""
    r = _record()
    t = r["start"]
    r["cells"].append({"cell": "e / seed 0 / none", "batch": t + 590, "done_at": t + 595, "seconds": 5.0})
    r["steps"][-1]["end"] = t + 600
    ts = {t.name: t for t in schedule.tasks(r)}
    assert ts["comparison.ipynb cell e / seed 0 / none (run 2)"].after == ("comparison.ipynb cell e / seed 0 / prune",)
    s = schedule.summary(r, (1, 2))
    assert s["projected"][1] == pytest.approx(s["work"]) and s["work"] == pytest.approx(60 + 40 + 300 + 15 + 100 + 80 + 120 + 5)


def test_the_comparison_unfolds_into_its_cells_in_the_batches_its_driver_sent():
    ts = {t.name: t for t in schedule.tasks(_record())}
    assert ts["comparison.ipynb (driver)"].seconds == pytest.approx(240 - 220)  # its span minus the cells' batches
    assert ts["comparison.ipynb cell e / seed 0 / prune"].after == ("comparison.ipynb cell e / seed 0 / none",
                                                                    "comparison.ipynb cell e / seed 1 / none")
    assert ts["b.ipynb"].seconds == 0  # kept: no time
    s = schedule.summary(_record(), (1, 2, 16))
    assert set(s["projected"]) == {1, 2, 16}  # every task holds 1 core
    # zoo 60 -> a 300 -> driver 20 -> cell 100 -> cell 120
    assert s["critical_path"] == pytest.approx(600) and s["chain"][-1] == "comparison.ipynb cell e / seed 0 / prune"
    assert s["work"] == pytest.approx(60 + 40 + 300 + 20 + 100 + 80 + 120)
    assert s["projected"][1] == pytest.approx(s["work"]) and s["projected"][16] == pytest.approx(600)
    wide = _record()
    wide["steps"][2]["cpus"] = 2.0
    assert set(schedule.summary(wide, (1, 2, 16))["projected"]) == {2, 16}  # 1 core cannot hold a 2-thread step
    without = {t.name: t for t in schedule.tasks(_record(cells=False))}
    assert without["comparison.ipynb"].seconds == 240 and without["comparison.ipynb"].cpus == 1.0


def test_the_status_page_gives_each_step_the_critical_path_and_labelled_projections():
    text = report.build_times_markdown(_record())
    assert "profile `default`" in text and "2 cores" in text and "cold" in text and "**10 min** wall" in text
    assert "zoo fashion-mnist (2 clean models)" in text and "kept (unchanged)" in text
    assert "critical path" in text and "**Projected**" in text and "not a measurement" in text and "16 cores: 10 min" in text
    bench = {"device": "CPU (2 threads)", "model": "lenet5", "data": "fashion-mnist", "batch_size": 128,
             "images_per_s": {"plain": 20307.4, "wmlib": 20325.5}, "matmul_peak_gflops": {"float32": 430.4, "bfloat16": 2658.6},
             "bf16_vs_fp32": {"plain": 1.2, "wmlib": 1.25}}
    assert "20,307 images/s" in report.build_times_markdown(_record(), bench)
    assert "2,659 bfloat16" in report.build_times_markdown(_record(), bench)
    no_bf16 = {**bench, "matmul_peak_gflops": {"float32": 430.4}, "bf16_vs_fp32": None}  # a CPU without native bf16
    assert "no native bfloat16 here" in report.build_times_markdown(_record(), no_bf16)
    assert "Machine:" not in text  # no benchmark file: nothing claimed


def test_a_kept_step_carries_the_time_of_the_run_that_made_its_output():
    ran = _record()
    kept_again = schedule.carry_time({"name": "a.ipynb", "start": 5.0, "end": 6.0, "kept": True},
                                     {st["name"]: schedule.run_seconds(st) for st in ran["steps"]})
    assert kept_again["last_run_seconds"] == 300 and schedule.step_seconds(kept_again) == 0
    assert schedule.run_seconds(kept_again) == 300  # and on to the build after it
    assert schedule.carry_time({"name": "a.ipynb", "start": 5.0, "end": 6.0}, {"a.ipynb": 300}) == \
        {"name": "a.ipynb", "start": 5.0, "end": 6.0}  # a step that ran has its own time
    warm = _record()
    warm["steps"][3]["last_run_seconds"] = 250.0  # b.ipynb, kept, made by a run of 250 s
    table = report.build_times_markdown(warm)
    row = next(line for line in table.splitlines() if line.startswith("| b.ipynb"))
    assert "kept (unchanged)" in row and "250" in row
    assert "250" not in next(line for line in report.build_times_markdown(_record()).splitlines()
                             if line.startswith("| b.ipynb"))  # not carried: unknown, left blank


def test_the_build_command_refuses_a_bad_profile_or_core_count(capsys):
    assert schedule.main(["build", "--profile", "fast"]) == 2 and "choose one of" in capsys.readouterr().err
    assert schedule.main(["build", "--profile", "smoke", "--cores", "0"]) == 2 and ">= 1" in capsys.readouterr().err


def test_every_step_runs_the_fixed_thread_count_and_a_bad_one_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("WMLIB_THREADS", "2")
    steps = schedule.plan("smoke", cores=16)
    assert {s.threads for s in steps} == {2} and {s.cpus for s in steps} == {0.0, 2.0}
    monkeypatch.setenv("WMLIB_THREADS", "two")
    with pytest.raises(ValueError, match="WMLIB_THREADS must be a whole number"):
        schedule.plan("smoke")
    assert schedule.main(["build", "--profile", "smoke"]) == 2 and "WMLIB_THREADS" in capsys.readouterr().err


def test_a_zoo_step_trains_with_its_own_thread_count(monkeypatch):
    import torch
    seen = []
    monkeypatch.setattr(zoo, "train_member", lambda **kw: seen.append((torch.get_num_threads(), kw)) or {"model": "m"})
    before = torch.get_num_threads()
    try:
        step = schedule.Step("zoo x", "zoo", (), 1, 1.0, {"dataset": "fashion-mnist", "arch": "lenet1", "s": 0})
        out = schedule._execute(step, "smoke", ".", "", "")
    finally:
        torch.set_num_threads(before)
    assert seen == [(1, step.args)] and out["detail"] == {"model": "m"} and out["end"] >= out["start"]


def test_a_notebooks_inputs_digest_changes_with_what_it_depends_on(tmp_path, monkeypatch):
    monkeypatch.setattr(schedule, "REPO_ROOT", tmp_path)
    (tmp_path / "wmlib").mkdir()
    (tmp_path / "notebooks").mkdir()
    lib, pins = tmp_path / "wmlib" / "a.py", tmp_path / "requirements.txt"
    nb, cmp_nb = tmp_path / "notebooks" / "integrity.ipynb", tmp_path / "notebooks" / "comparison.ipynb"
    for f in (lib, pins, nb, cmp_nb):
        f.write_text("x")
    monkeypatch.delenv("WMLIB_CACHE", raising=False)
    base = schedule.inputs_digest(nb, "default")
    assert schedule.inputs_digest(nb, "default") == base  # nothing changed: kept
    assert schedule.inputs_digest(nb, "full") != base
    for f in (lib, pins, nb, cmp_nb):  # its source, wmlib, the pins, and the comparison whose record it reads
        f.write_text("y")
        assert schedule.inputs_digest(nb, "default") != base, f
        f.write_text("x")
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path))
    assert schedule.inputs_digest(nb, "default") != base
    monkeypatch.delenv("WMLIB_CACHE")
    assert schedule.inputs_digest(cmp_nb, "default") == schedule.inputs_digest(cmp_nb, "default") != base


def test_a_notebook_step_hands_its_kernel_absolute_paths_and_its_thread_count(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, env, **kw):
        seen.update(cmd=cmd, env=env)
        return type("Done", (), {"returncode": 0})()
    monkeypatch.setattr(schedule.subprocess, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    nb = schedule.NOTEBOOKS / "zhang2018.ipynb"
    step = schedule.Step("zhang2018.ipynb", "notebook", (), 1, 1.0, {"path": str(nb)})
    out = schedule._execute(step, "smoke", "out", "addr", "out/cells.jsonl")
    # the kernel runs in notebooks/: a relative cell log would be written nowhere (the comparison failed so once)
    assert seen["env"][schedule.CELL_LOG] == str(tmp_path / "out" / "cells.jsonl")
    assert str(tmp_path / "out" / "zhang2018.ipynb") in seen["cmd"] and seen["env"]["OMP_NUM_THREADS"] == "1"
    assert seen["env"]["RAY_ADDRESS"] == "addr" and out["kept"] is False
    assert (tmp_path / "out" / "zhang2018.ipynb.digest").read_text().strip() == schedule.inputs_digest(nb, "smoke")
    seen.clear()  # a second run with nothing changed keeps the executed copy
    (tmp_path / "out" / "zhang2018.ipynb").write_text("{}")
    assert schedule._execute(step, "smoke", "out", "addr", "out/cells.jsonl")["kept"] is True and not seen


def test_wmlib_cores_sizes_a_local_cluster_and_a_bad_value_is_refused(monkeypatch):
    import sys
    import types

    from wmlib import cells

    seen = {}
    fake = types.SimpleNamespace(is_initialized=lambda: False, init=lambda **kw: seen.update(kw))
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("WMLIB_CORES", "1")
    cells._start_ray(None, None)
    assert seen["num_cpus"] == 1
    cells._start_ray(None, 3)  # an explicit count wins
    assert seen["num_cpus"] == 3
    monkeypatch.delenv("WMLIB_CORES")
    cells._start_ray(None, None)
    assert seen["num_cpus"] is None
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("WMLIB_CORES", bad)
        with pytest.raises(ValueError, match="WMLIB_CORES must be a whole number >= 1"):
            cells._start_ray(None, None)


def test_make_tests_workers_take_the_notebooks_first_and_a_reader_after_what_it_reads():
    import types
    from pathlib import Path

    from tests import parallel

    names = ["tests/unit/test_a.py", "notebooks/zhang2018.ipynb", "notebooks/integrity.ipynb", "tests/unit/test_b.py",
             "notebooks/comparison.ipynb", "notebooks/li2019.ipynb"]

    class Item(types.SimpleNamespace):
        def add_marker(self, m):
            self.marks.append(m)
    items = [Item(path=Path(n), marks=[]) for n in names]
    parallel.pytest_collection_modifyitems(None, items)
    order = [str(i.path) for i in items]
    assert order == ["notebooks/li2019.ipynb", "notebooks/comparison.ipynb", "notebooks/integrity.ipynb",
                     "notebooks/zhang2018.ipynb", "tests/unit/test_a.py", "tests/unit/test_b.py"]
    groups = {str(i.path): [m.kwargs.get("name", m.args[0] if m.args else None) for m in i.marks] for i in items}
    assert groups["notebooks/comparison.ipynb"] == groups["notebooks/integrity.ipynb"] == ["comparison"]
    assert groups["notebooks/li2019.ipynb"] == []
