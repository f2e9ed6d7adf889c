"""Forms of address (i18n.FORMS) and states in running text (i18n.state_in_sentence): the salutation and the
addressee lines follow the addressee (head of mission, observer, ambassador, chargé d'affaires, minister,
official) in English, French and Spanish; a State's name reads correctly inside a sentence."""

from __future__ import annotations

import csv
import shutil

import pytest

from dispatch import campaign, i18n
from dispatch.errors import RecipientsError
from tests.conftest import REPO, flat, pdf_text, row, ws
from tests.merge_campaign import dispatch

TRANSLATIONS = REPO / "tests" / "data" / "translations"
NA = {"id": "NA", "state": "Namibia", "mission": "Permanent Mission of Namibia to the United Nations"}


def rows(*given: dict[str, str]) -> list[dict[str, str]]:
    """Rows with the same columns (the new ones empty where a row does not set them)."""
    return [{"form": "", "addressee": "", "state_in_sentence": "", **r} for r in given]


@pytest.mark.parametrize("state, in_sentence", [
    ("Namibia", "Namibia"),
    ("Gambia", "the Gambia"),
    ("Netherlands", "the Netherlands"),
    ("Netherlands (Kingdom of the)", "the Kingdom of the Netherlands"),
    ("State of Palestine", "the State of Palestine"),
    ("Bolivia (Plurinational State of)", "the Plurinational State of Bolivia"),
    ("Venezuela (Bolivarian Republic of)", "the Bolivarian Republic of Venezuela"),
    ("Korea, Republic of", "the Republic of Korea"),
    ("Congo, The Democratic Republic of the", "the Democratic Republic of the Congo"),
    ("United Kingdom of Great Britain and Northern Ireland", "the United Kingdom of Great Britain and Northern Ireland"),
    ("Cook Islands", "the Cook Islands"),
    ("Central African Republic", "the Central African Republic"),
    ("Niger", "the Niger"),
    ("Nigeria", "Nigeria"),
    ("Dominica", "Dominica"),
    ("Saint Vincent and the Grenadines", "Saint Vincent and the Grenadines"),
    ("Solomon Islands", "Solomon Islands"), ("Maldives", "Maldives"), ("Marshall Islands", "the Marshall Islands"),
    ("Côte d'Ivoire", "Côte d’Ivoire"),
    ("The Bahamas", "the Bahamas"),
])
def test_state_in_sentence(state, in_sentence):
    assert i18n.state_in_sentence(state, "en") == in_sentence


def test_every_sample_state_reads_in_a_sentence():
    with open(REPO / "recipients.csv", encoding="utf-8", newline="") as handle:
        names = {r["id"]: i18n.state_in_sentence(r["state"]) for r in csv.DictReader(handle)}
    assert len(names) == 125
    assert not [n for n in names.values() if "(" in n or "'" in n or n.startswith("The ")]
    assert sum(n.startswith("the ") for n in names.values()) == 18


@pytest.mark.parametrize("name, language, of", [
    ("the Gambia", "en", "of the Gambia"), ("la France", "fr", "de la France"), ("le Niger", "fr", "du Niger"),
    ("les Pays-Bas", "fr", "des Pays-Bas"), ("Haïti", "fr", "d’Haïti"), ("l’Ouganda", "fr", "de l’Ouganda"),
    ("el Níger", "es", "del Níger"), ("Namibia", "es", "de Namibia"), ("", "fr", ""),
])
def test_of_state(name, language, of):
    assert i18n.of_state(name, language) == of


@pytest.mark.parametrize("fields, language, lines, salutation", [
    (NA, "en", ("The Permanent Representative of Namibia",), "Your Excellency,"),
    ({**NA, "title": "Mr.", "ambassador": "Neville Gertze"}, "en",
     ("H.E. Mr. Neville Gertze", "Permanent Representative of Namibia"), "Your Excellency,"),
    ({**NA, "title": "H.E. Mr.", "ambassador": "Neville Gertze"}, "en",
     ("H.E. Mr. Neville Gertze", "Permanent Representative of Namibia"), "Your Excellency,"),
    ({"state": "State of Palestine", "mission": "Permanent Observer Mission of the State of Palestine to the United "
      "Nations"}, "en", ("The Permanent Observer of the State of Palestine",), "Your Excellency,"),
    ({**NA, "form": "charge"}, "en", ("The Chargé d’affaires a.i.",), "Dear Chargé d’affaires,"),
    ({**NA, "form": "chargé d'affaires"}, "en", ("The Chargé d’affaires a.i.",), "Dear Chargé d’affaires,"),
    ({**NA, "form": "minister"}, "en", ("The Minister for Foreign Affairs of Namibia",), "Your Excellency,"),
    ({"state": "Gambia", "mission": "Embassy of the Gambia", "form": "ambassador"}, "en",
     ("The Ambassador of the Gambia",), "Your Excellency,"),
    ({"state": "Cook Islands", "mission": "Ministry of Foreign Affairs and Immigration of the Cook Islands",
      "form": "official", "addressee": "The Secretary of Foreign Affairs and Immigration"}, "en",
     ("The Secretary of Foreign Affairs and Immigration",), "Dear Secretary,"),
    ({**NA, "form": "official", "addressee": "The Permanent Secretary, Ministry of International Relations"}, "en",
     ("The Permanent Secretary, Ministry of International Relations",), "Dear Permanent Secretary,"),
    ({**NA, "form": "official", "addressee": "Legal Division"}, "en", ("Legal Division",), "Dear Sir or Madam,"),
    (NA, "fr", ("Le Représentant permanent",), "Excellence,"),
    ({**NA, "state_in_sentence": "la Namibie"}, "fr", ("Le Représentant permanent de la Namibie",), "Excellence,"),
    ({**NA, "form": "observer", "state_in_sentence": "l’État de Palestine"}, "fr",
     ("L’Observateur permanent de l’État de Palestine",), "Excellence,"),
    ({**NA, "form": "official", "addressee": "Le Directeur des affaires juridiques"}, "fr",
     ("Le Directeur des affaires juridiques",), "Madame, Monsieur,"),
    ({**NA, "form": "minister", "state_in_sentence": "el Níger"}, "es",
     ("El Ministro de Relaciones Exteriores del Níger",), "Excelencia:"),
    ({**NA, "form": "charge"}, "es", ("El Encargado de Negocios a.i.",), "Distinguido/a señor/a:"),
    # A language without a table: the English lines, and the letter's own salutation (None here).
    ({**NA, "ambassador": "عبد الله"}, "ar", ("عبد الله", "Permanent Representative of Namibia"), None),
])
def test_forms_of_address(fields, language, lines, salutation):
    assert i18n.addressee_lines(fields, language) == lines
    assert i18n.salutation(fields, language) == salutation


def test_every_form_is_in_every_table():
    for language, table in i18n.FORMS.items():
        assert tuple(table) == i18n.FORM_NAMES, language
        assert language in i18n.GENERIC_SALUTATION


def test_the_cook_islands_row_of_the_sample():
    with open(REPO / "recipients.csv", encoding="utf-8", newline="") as handle:
        ck = next(r for r in csv.DictReader(handle) if r["id"] == "CK")
    assert ck["form"] == "official"
    assert i18n.salutation(ck, "en") == "Dear Secretary,"
    assert i18n.addressee_lines(ck, "en") == ("The Secretary of Foreign Affairs and Immigration",)


def test_an_unknown_form_is_reported_at_its_cell(make_workspace):
    folder = make_workspace(rows(row("NA", "Namibia", form="consul")))
    result = dispatch(folder, "validate")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        "error: recipients.csv:2: form: recipient 'NA': unknown form of address 'consul'",
        "  hint: use one of: representative, observer, ambassador, charge, minister, official"]
    with pytest.raises(RecipientsError):
        campaign.render(ws(folder))


@pytest.mark.slow
def test_letters_greet_each_addressee_by_form(make_workspace):
    folder = make_workspace(rows(
        row("NA", "Namibia", title="Mr.", ambassador="Neville Gertze"),
        row("GM", "Gambia", form="charge", mission="Permanent Mission of the Gambia to the United Nations"),
        row("CK", "Cook Islands", form="official", mission="Ministry of Foreign Affairs and Immigration of the "
            "Cook Islands", addressee="The Secretary of Foreign Affairs and Immigration"),
        row("FR", "France", language="fr", state_in_sentence="la France", form="minister"),
        row("BO", "Bolivia (Plurinational State of)", mission="Permanent Mission of the Plurinational State of "
            "Bolivia to the United Nations"),
    ))
    shutil.copy(TRANSLATIONS / "letter.fr.md", folder / "letters" / "letter.fr.md")
    campaign.render(ws(folder))
    out = folder / "out" / "letter"
    text = {rid: flat(pdf_text(out / f"{rid}.pdf")) for rid in ("NA", "GM", "CK", "FR", "BO")}
    assert "H.E. Mr. Neville Gertze Permanent Representative of Namibia" in text["NA"]
    assert "Your Excellency," in text["NA"]
    assert "The Chargé d’affaires a.i. Permanent Mission of the Gambia" in text["GM"]
    assert "Dear Chargé d’affaires," in text["GM"] and "Excellency" not in text["GM"]
    assert "Dear Secretary," in text["CK"] and "Excellency" not in text["CK"]
    assert "Le Ministre des Affaires étrangères de la France" in text["FR"] and "Excellence," in text["FR"]
    assert "The Permanent Representative of the Plurinational State of Bolivia" in text["BO"]
