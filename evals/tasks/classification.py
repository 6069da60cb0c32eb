"""Email classification: Enron-Spam (spam vs ham), label match."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from evals.data.sources import HFRows
from evals.spec import Sample, Strategy, TaskSpec
from evals.tasks.common import require

Tables = Mapping[str, Sequence[Mapping[str, Any]]]

EMAIL_TEMPLATE = ("Classify the following email as 'spam' (unsolicited bulk or fraudulent mail) or 'ham' "
                  "(legitimate mail). Write the label on the last line in the form 'Answer: spam' or "
                  "'Answer: ham'.\n\nSubject: {subject}\n\n{body}")
LABELS = {"spam": ["junk"], "ham": ["not spam", "legitimate", "not junk"]}
MAX_BODY_CHARS = 4000
SPAM_LABELS = {0: "ham", 1: "spam"}  # SetFit/enron_spam prepare.py: label2id = {'ham': 0, 'spam': 1}


def parse_enron_spam(tables: Tables) -> list[Sample]:
    out = []
    for i, row in enumerate(tables["main"]):
        label, subject, body = require(row, "label", "subject", "message", task="enron_spam")
        if int(label) not in SPAM_LABELS:
            raise ValueError(f"task 'enron_spam': label {label!r} is neither 0 (ham) nor 1 (spam)")
        target = SPAM_LABELS[int(label)]
        if row.get("label_text") not in (None, target):
            raise ValueError(f"task 'enron_spam': label {label} but label_text {row['label_text']!r}")
        subject, body = (subject or "").strip(), (body or "").strip()
        if len(body) > MAX_BODY_CHARS:
            body = body[:MAX_BODY_CHARS] + "\n[...truncated]"
        sid = str(row.get("message_id", i))
        out.append(Sample(id=sid, target=target,
                          fields={"subject": subject or "(none)", "body": body or "(no body)", "answer": target}))
    return out


# Evidence: huggingface.co/datasets/SetFit/enron_spam, files train.jsonl / test.jsonl made by its prepare.py from
# MWiechmann/enron_spam_data's enron_spam_data.csv (Metsis et al. 2006, 33,716 mails): rows {message_id, text
# (subject + " " + message), label (ham 0, spam 1), label_text, subject, message ("" when empty), date
# (YYYY-MM-DD)}, shuffled with seed 42, the first 2,000 are the test split. datasets-server: config "default"
# (refs/convert/parquet default/{train,test}). No license is stated by the card or the CSV's repository.
ENRON_SPAM = TaskSpec(
    name="enron_spam", benchmark="Enron-Spam", category="Email Classification",
    data={"main": (HFRows("SetFit/enron_spam", "default", "test", rows=2000, license="none stated"),),
          "fewshot": (HFRows("SetFit/enron_spam", "default", "train", max_rows=100, license="none stated"),)},
    parser=parse_enron_spam, template=EMAIL_TEMPLATE, fewshot_answer_template="Answer: {answer}",
    extractor="label", grader="label", grader_options={"labels": LABELS}, strategy=Strategy("few-shot", shots=3),
    license="none stated (SetFit card, MWiechmann/enron_spam_data); Enron-Spam corpus by Metsis et al. 2006",
    description="2,000 test emails from the Enron-Spam corpus (SetFit copy), 3 labelled examples from the first "
                "100 train emails.")

TASKS = (ENRON_SPAM,)
