"""Each task's parser against rows in its real published schema: label meanings, answer formats, and the sources
the registry points at (the evidence for each is cited next to the source in evals/tasks/)."""
import pytest

from evals.data import Concat, HFRows, PackageFile, UrlFile
from evals.registry import TASKS, get_task
from evals.tasks import classification, maths, multiple_choice


def test_ethics_label_1_means_wrong():
    rows = [{"label": 1, "input": "I kicked the dog for fun."}, {"label": 0, "input": "I fed the dog."}]
    wrong, fine = multiple_choice.parse_ethics_commonsense({"main": rows})
    assert "A) Not wrong\nB) Wrong" in wrong.fields["options"]
    assert (wrong.target, fine.target) == ("B", "A")
    with pytest.raises(ValueError, match="label 2"):
        multiple_choice.parse_ethics_commonsense({"main": [{"label": 2, "input": "x"}]})


def test_ethics_reads_the_normal_test_set_not_the_hard_one():
    # hendrycks/ethics: validation = cm_test.csv (3,885 rows), test = cm_test_hard.csv (3,964 rows)
    first = get_task("ethics_commonsense").data["main"][0]
    assert (first.dataset, first.config, first.split, first.rows) == ("hendrycks/ethics", "commonsense",
                                                                      "validation", 3885)


def test_enron_label_1_is_spam_and_label_text_must_agree():
    def row(label, text, message="hello"):
        return {"message_id": 7, "text": "s " + message, "label": label, "label_text": text, "subject": "s",
                "message": message, "date": "2001-05-01"}
    spam, ham = classification.parse_enron_spam({"main": [row(1, "spam"), row(0, "ham", "")]})
    assert (spam.target, ham.target) == ("spam", "ham") and ham.fields["body"] == "(no body)"
    with pytest.raises(ValueError, match="label_text 'ham'"):
        classification.parse_enron_spam({"main": [row(1, "ham")]})


def test_truthfulqa_target_follows_the_true_choice_through_the_shuffle():
    choices = ["True answer.", "False one.", "False two.", "False three."]
    (s,) = multiple_choice.parse_truthfulqa_mc1({"main": [
        {"question": "Q?", "mc1_targets": {"choices": choices, "labels": [1, 0, 0, 0]}}]})
    assert f"{s.target}) True answer." in s.fields["options"]


def test_gpqa_target_is_the_correct_answer_after_shuffling():
    row = {"Question": "Which?\n", "Correct Answer": "right\n", "Incorrect Answer 1": "w1", "Incorrect Answer 2": "w2",
           "Incorrect Answer 3": "w3\n", "Record ID": "recX", "High-level domain": "Physics"}
    rows = [row, {**row, "Record ID": "recY", "Correct Answer": "other"}]
    samples = multiple_choice.parse_gpqa({"main": rows})
    # OpenAI's GPQAEval: rows listed n_repeats times, one random.Random(0).sample(range(4), 4) per entry in order
    import random
    rng = random.Random(0)
    draws = [rng.sample(range(4), 4) for _ in range(len(rows) * 8)]
    spec = multiple_choice.GPQA_DIAMOND
    prompts = set()
    for i, s in enumerate(samples):
        for r in range(8):
            v = spec.vary(s, r)
            order = draws[r * len(rows) + i]
            assert v.meta["permutation"] == order and v.target == "ABCD"[order.index(0)]
            assert v.fields[v.target] == rows[i]["Correct Answer"]  # the gold option text, unstripped as OpenAI
            prompt = spec.template.format(**v.fields)
            assert prompt.startswith("Which?\n\n\n(A) ") and prompt.endswith("'A', 'B', 'C', or 'D'.")
            prompts.add(prompt)
    assert len(prompts) > 8  # the options move between repeats


def test_aime_answers_are_normalized_integers():
    rows = [{"question": "q1", "answer": "070"}, {"problem": "q2", "answer": 33}, {"problem": "q3", "answer": "33 "}]
    assert [s.target for s in maths.parse_aime({"main": rows})] == ["70", "33", "33"]
    with pytest.raises(ValueError, match="not an integer"):
        maths.parse_aime({"main": [{"problem": "q", "answer": "\\frac{1}{2}"}]})


def test_gsm8k_final_answer_and_worked_solution_without_calculator_notes():
    (s,) = maths.parse_gsm8k({"main": [{"question": "How many?",
                                        "answer": "12 * 100 = <<12*100=1200>>1200 pencils.\n#### 1,200"}]})
    assert s.target == "1200" and s.fields["worked"] == "12 * 100 = 1200 pencils."


def test_every_download_declares_its_published_row_count():
    for spec in TASKS.values():
        for table, sources in spec.data.items():
            for src in sources:
                if isinstance(src, PackageFile) or getattr(src, "max_rows", None):
                    continue
                assert isinstance(src, (UrlFile, HFRows, Concat)) and src.rows, (spec.name, table, src)


@pytest.mark.parametrize("text,letters,letter", [
    ("The answer is a bit subtle: photons carry it.\n\n**C**", "ABCD", "C"),  # the article "a" is not option A
    ("Answer: B) Wrong", "AB", "B"), ("answer: c.", "ABCD", "C"), ("The correct option is (b)", "ABCD", "B"),
    ("Answer: a good one is B", "ABCD", None), ("Answer: C", "AB", None)])
def test_mc_letter_reads_capitals_and_only_unambiguous_lower_case(text, letters, letter):
    from evals import extract
    assert extract.mc_letter(text, letters) == letter
