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


def parse_enron_spam(tables: Tables) -> list[Sample]:
    out = []
    for i, row in enumerate(tables["main"]):
        (label,) = require(row, "label", task="enron_spam")
        subject = (row.get("subject") or "").strip()
        body = (row.get("message") if row.get("message") is not None else row.get("text") or "").strip()
        if len(body) > MAX_BODY_CHARS:
            body = body[:MAX_BODY_CHARS] + "\n[...truncated]"
        target = "spam" if int(label) == 1 else "ham"
        sid = str(row.get("message_id", i))
        out.append(Sample(id=sid, target=target,
                          fields={"subject": subject or "(none)", "body": body, "answer": target}))
    return out


ENRON_SPAM = TaskSpec(
    name="enron_spam", benchmark="Enron-Spam", category="Email Classification",
    data={"main": (HFRows("SetFit/enron_spam", "default", "test", license="see dataset card (Enron corpus)"),),
          "fewshot": (HFRows("SetFit/enron_spam", "default", "train", max_rows=100,
                             license="see dataset card (Enron corpus)"),)},
    parser=parse_enron_spam, template=EMAIL_TEMPLATE, fewshot_answer_template="Answer: {answer}",
    extractor="label", grader="label", grader_options={"labels": LABELS}, strategy=Strategy("few-shot", shots=3),
    license="public Enron corpus (Metsis et al. 2006); card license unspecified",
    description="2,000 test emails from the Enron-Spam corpus (SetFit copy), 3 labelled examples from the first "
                "100 train emails.")

TASKS = (ENRON_SPAM,)
