"""The mapper's opt-in fields for marketers (EV_Provider, EV_Free, EV_Role, EV_DidYouMean) as
traits: written only when `traits` selects them, booleans as JSON booleans, checked by the landing
check like the verdict, and a Person already holding them is not written again."""

from __future__ import annotations

from typing import Any

EXTRAS = ["EV_Provider", "EV_Free", "EV_Role", "EV_DidYouMean"]
TRAITS = ["EV_Status", "EV_SubStatus", "EV_Validation_Timestamp", *EXTRAS]
SCHEMA_EXTRAS = {
    "EV_Provider": {"type": ["string", "null"]},
    "EV_Free": {"type": ["boolean", "null"]},
    "EV_Role": {"type": ["boolean", "null"]},
    "EV_DidYouMean": {"type": ["string", "null"]},
}


def people(sb: Any, h: Any, count: int = 20) -> list[Any]:
    return [p for p in sb.world.iter_people() if p.id and p.email][:count]


def extras_of(person: Any) -> dict[str, Any]:
    suggestion = None if person.index % 3 else "someone@gmail.com"
    return {
        "EV_Provider": person.truth.provider or "other",
        "EV_Free": person.index % 2 == 0,
        "EV_Role": False,
        "EV_DidYouMean": suggestion,
    }


def lines(h: Any, records: list[dict[str, Any]]) -> list[str]:
    schema = {**h.PEOPLE_SCHEMA, "properties": {**h.PEOPLE_SCHEMA["properties"], **SCHEMA_EXTRAS}}
    return h.singer_lines(records, schema=schema)


def test_selected_extra_traits_are_written_and_the_landing_check_covers_them(sb, h):
    picked = people(sb, h)
    records = [h.person_record(p, **extras_of(p)) for p in picked]
    config = sb.target_config(
        traits=TRAITS,
        app_api_key=sb.tap_config()["app_api_key"],
        app_api_url=sb.app_api_url,
        landing_check_sample=len(picked),
    )
    target, _ = h.run_in_process(config, lines(h, records))
    for person in picked:
        landed = sb.obs.landed[person.cio_id]
        expected = {k: v for k, v in extras_of(person).items() if v is not None}
        assert {k: landed[k] for k in EXTRAS if k in landed} == expected
        assert type(landed["EV_Free"]) is bool  # a JSON boolean, not "true"
        assert ("EV_DidYouMean" in landed) is (expected.get("EV_DidYouMean") is not None)
    report = target.landing_report
    assert report.checked and report.phrase().startswith(f"landing: {len(picked)} of {len(picked)}")


def test_extra_fields_are_not_sent_unless_selected(sb, h):
    picked = people(sb, h, 5)
    records = [h.person_record(p, **extras_of(p)) for p in picked]
    h.run_in_process(sb.target_config(landing_check_sample=0), lines(h, records))
    for person in picked:
        assert not set(EXTRAS) & set(sb.obs.landed[person.cio_id])


def test_a_person_already_holding_the_extra_traits_is_skipped(sb, h):
    picked = people(sb, h, 6)
    config = sb.target_config(traits=TRAITS, landing_check_sample=0)
    records = []
    for person in picked:
        extras = extras_of(person)
        record = h.person_record(person, **extras)
        # What the tap reads back from Customer.io: every value a string, timestamps Unix seconds.
        stored = {
            "EV_Status": record["EV_Status"],
            "EV_SubStatus": record["EV_SubStatus"],
            "EV_Validation_Timestamp": str(int(h.VERIFIED_AT.timestamp())),
            **{
                k: str(v).lower() if isinstance(v, bool) else v
                for k, v in extras.items()
                if v is not None
            },
        }
        record["attributes"] = {**person.attributes, **stored}
        records.append(record)
    target, _ = h.run_in_process(config, lines(h, records))
    assert target.stats["skipped_unchanged"] == len(picked)
    assert target.stats["written"] == 0
    # One extra trait that changed is a write.
    records[0]["attributes"]["EV_Provider"] = "zoho"
    target, _ = h.run_in_process(config, lines(h, records[:1]))
    assert target.stats["written"] == 1
