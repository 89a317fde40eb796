"""The work ledger: trainings and evaluations note themselves, Ray results are absorbed, phases are listed."""
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
