"""Answers written by a machine: out-of-office and other automatic replies, and mail sent in bulk.

`automatic` names the sign that marks a message as written by a machine: the headers of RFC 3834
(Auto-Submitted other than "no"), the headers of the common responders (X-Autoreply, X-Autorespond,
Precedence: auto_reply, Exchange's and Apple's vacation headers), or an out-of-office subject in one of
the languages the coordinators' correspondents write in. `bulk` tells a newsletter or mailing-list
message, which is never a reply even when it comes from a recipient's address.
"""

from __future__ import annotations

import re

from dispatch.mail.inbound import Inbound

# Subjects that only an automatic reply starts with (after "Re:", "[", and the like).
_STARTS = [
    r"auto(matic|matische?|mated)?[ _-]?(reply|response|responder|antwort|svar|respons)",
    r"auto(matic|matically)?[ -]?generated", r"auto:", r"autoreply", r"autorespon", r"out of (the )?office",
    r"ooo\b", r"away from (the |my )?(office|desk)", r"(i am|i'm) (currently )?(away|out|on leave|on vacation)",
    r"on (vacation|holiday|leave|annual leave|parental leave|maternity leave)\s*($|:|-|until|till|from)",
    r"absent\s*($|:|-|until)", r"away:",
    # French
    r"r[ée]ponse automatique", r"absen(ce|t|te)\s*($|:|-|du bureau|jusqu)", r"message d.absence",
    r"en cong[ée]s?\s*($|:|-|jusqu|du)",
    r"hors du bureau",
    # Spanish
    r"respuesta autom[áa]tica", r"fuera de (la )?oficina", r"ausente\s*($|:|-|hasta|de la oficina)",
    r"ausencia\s*($|:|-)", r"de vacaciones\s*($|:|-|hasta)",
    # German
    r"automatische antwort", r"abwesenheit(snotiz|smeldung|snachricht)|abwesenheit\s*($|:|-|bis)",
    r"nicht im b[üu]ro", r"au(ß|ss)er haus", r"urlaub\s*($|:|-|bis|vom)",
    r"im urlaub",
    # Portuguese
    r"resposta autom[áa]tica", r"fora do escrit[óo]rio", r"aus[êe]ncia\s*($|:|-)",
    r"(de|em) f[ée]rias\s*($|:|-|at[ée])",
    # Italian, Dutch, Scandinavian, Polish
    r"risposta automatica", r"fuori (ufficio|sede)", r"automatisch antwoord", r"afwezig", r"buiten kantoor",
    r"autosvar", r"fr[åa]nvarande", r"frav[æe]r", r"odpowied[źz] automatyczna",
    # Arabic: automatic reply, out of the office, absent
    r"رد (آلي|تلقائي)", r"الرد التلقائي", r"خارج المكتب", r"غائب",
    # Russian, Turkish, Chinese, Japanese
    r"автоответ", r"автоматический ответ", r"нет в офисе",
    r"otomatik yan[ıi]t", r"ofis d[ıi][şs][ıi]nda",  # noqa: RUF001 (Turkish dotless i)
    r"自动回复", r"自動回覆", r"不在", r"自動応答", r"自動返信",
]
# Phrases that mark an automatic reply wherever they stand in the subject.
_ANYWHERE = [
    r"out of (the )?office", r"automatic reply", r"auto[ -]?reply", r"r[ée]ponse automatique",
    r"respuesta autom[áa]tica", r"resposta autom[áa]tica", r"abwesenheitsnotiz", r"automatische antwort",
    r"risposta automatica", r"رد تلقائي", r"自动回复",
]
_SUBJECT_START = re.compile(r"^(?:\s*(?:re|aw|sv|vs|rv|r|res|ref|tr|wg|fw|fwd|antw|odp|ynt|回复|答复)\s*:\s*"
                            r"|\s*[\[(]\s*)*(?:" + "|".join(_STARTS) + ")", re.IGNORECASE)
_SUBJECT_ANYWHERE = re.compile("|".join(_ANYWHERE), re.IGNORECASE)
_RESPONDER_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Auto-Reply", "X-Vacation")
_SUPPRESS = re.compile(r"\b(all|oof|autoreply)\b", re.IGNORECASE)


def automatic(inbound: Inbound) -> str | None:
    """The sign that this message was written by a responder, or None for a message written by a person."""
    submitted = inbound.header("Auto-Submitted", 100).split(";")[0].strip().lower()
    if submitted and submitted != "no":
        return f"Auto-Submitted: {submitted}"
    for name in _RESPONDER_HEADERS:
        value = inbound.header(name, 100).strip().lower()
        if value and value not in ("no", "false", "0"):
            return f"{name}: {value}"
    precedence = inbound.header("Precedence", 100).strip().lower()
    if precedence in ("auto_reply", "auto-reply", "autoreply"):
        return f"Precedence: {precedence}"
    if inbound.header("X-Precedence", 100).strip().lower() == "auto_reply":
        return "X-Precedence: auto_reply"
    if "vacation" in inbound.header("X-Apple-Action", 100).lower():
        return "X-Apple-Action: VACATION"
    subject = inbound.header("Subject", 500)
    if subject and (_SUBJECT_START.match(subject) or _SUBJECT_ANYWHERE.search(subject)):
        return "subject: " + subject[:80]
    if _SUPPRESS.search(inbound.header("X-Auto-Response-Suppress", 200)) and inbound.header(
            "X-MS-Exchange-Inbox-Rules-Loop", 200):
        return "X-MS-Exchange-Inbox-Rules-Loop"  # Exchange's out-of-office rule answered
    return None


def bulk(inbound: Inbound) -> bool:
    """A newsletter or a mailing-list message (List-Id, List-Unsubscribe, Precedence: bulk/list/junk)."""
    if inbound.header("List-Id", 10) or inbound.header("List-Unsubscribe", 10):
        return True
    return inbound.header("Precedence", 100).strip().lower() in ("bulk", "list", "junk")


def from_a_mailer(inbound: Inbound) -> bool:
    """Sent by a mail server's delivery system (MAILER-DAEMON, postmaster) or shaped like its notices."""
    sender = inbound.sender or ""
    local = sender.split("@")[0]
    if local in ("mailer-daemon", "mailerdaemon", "mail-daemon", "postmaster", "mailadmin", "mmdf",
                 "mail.daemon", "mail-delivery-system", "mdaemon", "smtp", "root", "daemon"):
        return True
    written = inbound.header("From").lower()
    if "mailer-daemon" in written or (not sender and "<>" in written.replace(" ", "")):
        return True
    if inbound.header("X-Failed-Recipients", 10):
        return True
    kind = inbound.header("Content-Type", 200).lower()
    if kind.startswith("multipart/report"):
        return True
    subject = inbound.header("Subject").lower()
    return bool(re.search(r"undeliver|undelivered|non-delivery|"
                          r"delivery (status|failure|failed|notification|problem|warning)|"
                          r"returned mail|failure notice|mail delivery failed|could not be delivered|"
                          r"non remis|non distribu|unzustellbar|nicht zustellbar|no se (puede|pudo) entregar|"
                          r"não (foi )?entregue|nao entregue|mensagem não entregue|niet bezorgd|"
                          r"non recapitabile|delivery has failed", subject))
