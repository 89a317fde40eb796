"""The work ledger: trainings and evaluations note themselves, Ray results are absorbed, phases are listed."""
import pandas as pd
import torch

from wmlib import data, models, report, timing, train


def test_fit_and_evaluate_note_their_work():
    before = timing.snapshot()
    split = data.Split(torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (200,)))
    model = models.build("lenet1", 1, 10)
    train.fit(model, split, train.TrainConfig(epochs=2, batch_size=50), monitor={"val": split},
              device=torch.device("cpu"), progress=False)
    done = timing.since(before)
    assert done["trainings"] == 1 and done["epochs"] == 2 and done["train_images"] == 400
    assert done["eval_images"] == 400  # the monitor, once per epoch
    assert done["train_seconds"] > 0 and done["eval_seconds"] > 0
    train.evaluate(model, split)
    assert timing.since(before)["eval_images"] == 600


def test_absorb_adds_a_workers_work_and_rates_divide():
    before = timing.snapshot()
    work = {"trainings": 2, "epochs": 10, "train_images": 1000, "train_seconds": 4.0}
    result = {"claimed": True, **timing.as_fields(work)}  # as a comparison cell carries it
    assert result["work_trainings"] == 2 and timing.from_fields(result) == work
    timing.absorb(timing.from_fields(result))
    done = timing.rates(timing.since(before))
    assert done["trainings"] == 2 and done["train_images_per_s"] == 250.0 and done["eval_images_per_s"] is None


def test_phases_outside_a_kernel_record_nothing_and_the_status_page_shows_the_largest():
    assert timing.Phases().rows() == []
    phases = [timing.rates({"phase": f"[{i}] cell {i}", "seconds": float(i), **dict.fromkeys(timing.FIELDS, 0)})
              for i in range(1, 12)]
    text = report.phases_markdown(phases, wall=66.0, top=3)
    assert "`[11] cell 11`" in text and "`[8] cell 8`" not in text and "3 longest of 11 cells" in text


def test_build_times_say_whether_the_build_was_cold():
    times = pd.DataFrame({"step": ["zoo", "a.ipynb"], "seconds": [60, 120], "models cached before": [0, 14],
                          "models added to the cache": [14, 3]})
    text = report.build_times_markdown(times)
    assert "cold" in text and "3 min in all" in text and "| **total**" in text and "17 |" in text


def test_build_times_name_the_profile_and_the_machines_benchmark():
    times = pd.DataFrame({"step": ["zoo"], "seconds": [60], "models cached before": [0], "models added to the cache": [14]})
    bench = {"device": "CPU (2 threads)", "model": "lenet5", "data": "fashion-mnist", "batch_size": 128,
             "images_per_s": {"plain": 20307.4, "wmlib": 20325.5}, "matmul_peak_gflops": {"float32": 430.4, "bfloat16": 2658.6},
             "bf16_vs_fp32": {"plain": 1.2, "wmlib": 1.25}}
    text = report.build_times_markdown(times, "full", bench)
    assert "profile `full`" in text and "20,307 images/s" in text and "430 GFLOP/s" in text and "1.25x" in text
    assert "Machine:" not in report.build_times_markdown(times)  # no benchmark file: nothing claimed


def test_a_notebooks_inputs_digest_changes_with_what_it_depends_on(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "REPO_ROOT", tmp_path)
    (tmp_path / "wmlib").mkdir()
    (tmp_path / "notebooks").mkdir()
    lib, pins = tmp_path / "wmlib" / "a.py", tmp_path / "requirements.txt"
    nb, cmp_nb = tmp_path / "notebooks" / "integrity.ipynb", tmp_path / "notebooks" / "comparison.ipynb"
    for f in (lib, pins, nb, cmp_nb):
        f.write_text("x")
    monkeypatch.delenv("WMLIB_CACHE", raising=False)
    base = report.inputs_digest(nb, "default")
    assert report.inputs_digest(nb, "default") == base  # nothing changed: kept
    assert report.inputs_digest(nb, "full") != base
    for f in (lib, pins, nb, cmp_nb):  # its source, wmlib, the pins, and the comparison whose record it reads
        f.write_text("y")
        assert report.inputs_digest(nb, "default") != base, f
        f.write_text("x")
    monkeypatch.setenv("WMLIB_CACHE", str(tmp_path))
    assert report.inputs_digest(nb, "default") != base
    monkeypatch.delenv("WMLIB_CACHE")
    assert report.inputs_digest(cmp_nb, "default") == report.inputs_digest(cmp_nb, "default") != base
