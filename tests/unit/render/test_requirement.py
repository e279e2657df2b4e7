"""NVIDIA_REQUIRE_CUDA: the value the plan writes admits exactly the drivers the resolver admits,
judged by libnvidia-container's rules; the parser reads what that runtime reads."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from builder import knowledge
from builder.compat import CudaVersion, DriverVersion
from builder.errors import LockError, RenderError, ResolutionError
from builder.render import plan, requirement, templates
from builder.render.requirement import Condition, Device, Driver, Requirement
from builder.resolve import resolve
from builder.resolve.resolve import ResolutionRecord
from builder.resolve.target import Target
from builder.spec.check import load_spec
from tests.locks import make_lock

KB = knowledge.load()
# Both sides of every family floor (450.80.02, 525.60.13, 580.65.06) and of some minors' first
# drivers.
DRIVERS = (
    "418.87.01",
    "450.80.01",
    "450.80.02",
    "470.82.01",
    "520.61.05",
    "525.60.12",
    "525.60.13",
    "535.104.05",
    "550.54.14",
    "570.26",
    "570.86.10",
    "579.99",
    "580.65.06",
    "590.44.01",
)
CUDAS = sorted({build.cuda for build in KB.builds if build.cuda is not None})
NVIDIA_STYLE = (
    "cuda>=12.4 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471 "
    "brand=tesla,driver>=535,driver<536"
)


def host(driver: str) -> Driver:
    version = DriverVersion.parse(driver)
    return Driver(version, requirement.driver_cuda(version, KB))


def admits(value: str, driver: str) -> bool:
    return requirement.evaluate(requirement.parse(value), host(driver)).satisfied


def written(cuda: str) -> str:
    version = CudaVersion.parse(cuda)
    family = KB.family(version)
    assert family is not None
    return requirement.require_cuda(version, family.min_driver)


def test_the_value_written_for_each_cuda() -> None:
    assert written("12.4") == "cuda>=12.0,driver>=525.60.13"
    assert written("12.1") == "cuda>=12.0,driver>=525.60.13"
    assert written("11.8") == "cuda>=11.0,driver>=450.80.02"
    assert written("13.0") == "cuda>=13.0,driver>=580.65.06"


def test_the_family_floor_is_the_edge() -> None:
    assert [d for d in DRIVERS if admits(written("12.4"), d)] == [
        "525.60.13",
        "535.104.05",
        "550.54.14",
        "570.26",
        "570.86.10",
        "579.99",
        "580.65.06",
        "590.44.01",
    ]
    assert [d for d in DRIVERS if not admits(written("11.8"), d)] == ["418.87.01", "450.80.01"]
    assert [d for d in DRIVERS if admits(written("13.0"), d)] == ["580.65.06", "590.44.01"]


def test_cuda_x_y_was_the_bug() -> None:
    """The old value refused the example's target driver, which the resolver admits."""
    assert not admits("cuda>=12.4", "535.104.05")
    assert admits(written("12.4"), "535.104.05")


@pytest.mark.parametrize("cuda", CUDAS, ids=str)
def test_runtime_and_resolver_agree_on_every_driver(cuda: CudaVersion) -> None:
    build = next(b for b in KB.builds if b.cuda == cuda)
    value = written(str(cuda))
    for driver in DRIVERS:
        target = Target(DriverVersion.parse(driver), (), "spec")
        verdict = resolve.judge(build, resolve.Request(None, None, None, target), KB)
        assert admits(value, driver) == verdict.eligible, (cuda, driver)


def test_every_family_is_covered() -> None:
    assert {cuda.major for cuda in CUDAS} == {family.major for family in KB.families}


@pytest.mark.parametrize("cuda", ["11.8", "12.4", "13.0"])
def test_the_resolver_itself_agrees(tmp_path: Path, cuda: str) -> None:
    torch = next(str(b.torch) for b in KB.builds if str(b.cuda) == cuda)
    for driver in DRIVERS:
        (tmp_path / "reprobuild.toml").write_text(
            f'name = "lab/x"\npython = "3.11"\ntorch = "{torch}"\ncuda = "{cuda}"\n'
            f'[target]\ndriver = "{driver}"\n'
        )
        spec = load_spec(tmp_path, KB).spec
        try:
            record = resolve.resolve_spec(spec, KB).record()
        except ResolutionError:
            assert not admits(written(cuda), driver), driver
        else:
            assert record.get("cuda") == cuda
            assert admits(requirement.of_record(record), driver), driver


def test_the_plan_and_both_definitions_carry_it() -> None:
    digest = "sha256:" + "e" * 64
    build_plan = plan.plan(make_lock(), digest)
    assert ("NVIDIA_REQUIRE_CUDA", "cuda>=12.0,driver>=525.60.13") in build_plan.env
    outputs = templates.render(build_plan, digest, None)
    assert '    NVIDIA_REQUIRE_CUDA="cuda>=12.0,driver>=525.60.13"' in outputs["Dockerfile"]
    assert (
        "    export NVIDIA_REQUIRE_CUDA='cuda>=12.0,driver>=525.60.13'"
        in (outputs["reprobuild.def"].split("%environment\n")[1])
    )
    assert "NVIDIA_REQUIRE_CUDA" not in dict(plan.plan(make_lock(cuda=None), digest).env)


def test_a_lock_without_its_floor_is_an_error() -> None:
    lock = make_lock()
    record = dict(lock.resolution)
    record.pop("min_driver")
    with pytest.raises(LockError) as caught:
        requirement.of_record(cast("ResolutionRecord", record))
    assert str(caught.value) == (
        "the lock's resolution gives CUDA 12.4 and minimum driver (none); an image's "
        "NVIDIA_REQUIRE_CUDA needs both. The lock is damaged or hand-edited: run `reprobuild lock` "
        "again."
    )


def test_a_driver_reports_the_newest_cuda_it_reaches() -> None:
    reported = {d: requirement.driver_cuda(DriverVersion.parse(d), KB) for d in DRIVERS}
    assert {d: str(c) if c else None for d, c in reported.items()} == {
        "418.87.01": None,
        "450.80.01": None,
        "450.80.02": "11.0",
        "470.82.01": "11.0",
        "520.61.05": "11.8",
        "525.60.12": "11.8",
        "525.60.13": "12.0",
        "535.104.05": "12.2",
        "550.54.14": "12.4",
        "570.26": "12.8",
        "570.86.10": "12.8",
        "579.99": "12.9",
        "580.65.06": "13.0",
        "590.44.01": "13.1",
    }


def test_the_parser_reads_alternatives_and_conditions() -> None:
    assert requirement.parse("cuda>=12.0,driver>=525.60.13") == Requirement(
        "cuda>=12.0,driver>=525.60.13",
        ((Condition("cuda", ">=", "12.0"), Condition("driver", ">=", "525.60.13")),),
    )
    assert requirement.parse(NVIDIA_STYLE).alternatives == (
        (Condition("cuda", ">=", "12.4"),),
        (
            Condition("brand", "=", "tesla"),
            Condition("driver", ">=", "470"),
            Condition("driver", "<", "471"),
        ),
        (
            Condition("brand", "=", "unknown"),
            Condition("driver", ">=", "470"),
            Condition("driver", "<", "471"),
        ),
        (
            Condition("brand", "=", "tesla"),
            Condition("driver", ">=", "535"),
            Condition("driver", "<", "536"),
        ),
    )


def test_the_parser_reads_every_operator_name_case_and_empty_piece() -> None:
    text = "cuda=12.0 CUDA!=12.0,Driver<1 arch<=8.0,,brand!x  driver>2,arch>=9.0 , "
    assert requirement.parse(text).alternatives == (
        (Condition("cuda", "=", "12.0"),),
        (Condition("cuda", "!=", "12.0"), Condition("driver", "<", "1")),
        (Condition("arch", "<=", "8.0"), Condition("brand", "!=", "x")),
        (Condition("driver", ">", "2"), Condition("arch", ">=", "9.0")),
        (),
    )
    assert requirement.parse("").alternatives == ()
    assert requirement.parse("cuda>=12..4.").alternatives == ((Condition("cuda", ">=", "12..4."),),)


def test_a_malformed_requirement_names_the_condition_and_the_rule() -> None:
    with pytest.raises(RenderError) as caught:
        requirement.parse("cuda>=12.0 driver=>525")
    assert str(caught.value) == (
        "NVIDIA_REQUIRE_CUDA 'cuda>=12.0 driver=>525': the condition 'driver=>525' is one the "
        "NVIDIA container runtime rejects, refusing the container: '=>' is not one of = != < <= "
        "> >=. Write conditions as NAME OP VALUE, like cuda>=12.0,driver>=525.60.13, "
        "alternatives separated by spaces."
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("cuda", "it has no operator"),
        (">=12.0", "it names ''; the runtime knows cuda, driver, arch, brand"),
        ("gpu>=1", "it names 'gpu'; the runtime knows cuda, driver, arch, brand"),
        ("cuda==12.0", "'==' is not one of = != < <= > >="),
        ("cuda>=", "it has no value"),
        ("cuda>=12.4a", "'12.4a' is not a version of dotted numbers"),
        ("cuda>=.4", "'.4' is not a version of dotted numbers"),
        ("cuda>=12.4<13", "'12.4<13' is not a version of dotted numbers"),
        ("driver>=18446744073709551615", "'18446744073709551615' is not a version of dotted"),
        ("brand>=tesla", "a brand compares with = or != only"),
        ("brand=" + "x" * 120, "it is too long for the runtime's 128-byte buffer"),
    ],
)
def test_malformed_conditions(text: str, problem: str) -> None:
    with pytest.raises(RenderError, match=f": {problem}"):
        requirement.parse(text)


def test_the_longest_condition_the_runtime_formats() -> None:
    assert requirement.parse("brand=" + "x" * 119).alternatives[0][0].value == "x" * 119


def test_versions_compare_part_by_part_with_missing_parts_zero() -> None:
    facts = host("535.104.05")
    holding = {
        text: requirement.holds(requirement.parse(text).alternatives[0][0], facts, None)
        for text in (
            "driver>=535.104.5",
            "driver=535.104.05.0",
            "driver>535.104",
            "driver<535.104.05.1",
            "driver!=535.104.05",
            "driver<=535.104.05",
            "driver>535.54.03",
            "driver<535.54.03",
            "cuda=12.2",
            "cuda>12",
            "cuda<12.10",
        )
    }
    assert holding == {
        "driver>=535.104.5": True,
        "driver=535.104.05.0": True,
        "driver>535.104": True,
        "driver<535.104.05.1": True,
        "driver!=535.104.05": False,
        "driver<=535.104.05": True,
        "driver>535.54.03": True,
        "driver<535.54.03": False,
        "cuda=12.2": True,
        "cuda>12": True,
        "cuda<12.10": True,
    }


def test_nvidias_own_value_admits_old_drivers_on_tesla_only() -> None:
    value = requirement.parse(NVIDIA_STYLE)
    tesla, geforce = Device("9.0", "Tesla"), Device("8.9", "GeForce")
    assert requirement.evaluate(value, host("550.54.14"), [geforce]).satisfied
    assert requirement.evaluate(value, host("535.104.05"), [tesla]).satisfied
    refused = requirement.evaluate(value, host("535.104.05"), [geforce])
    assert not refused.satisfied
    assert [str(c) for c in refused.unmet] == [
        "cuda>=12.4",
        "brand=tesla",
        "brand=unknown",
        "brand=tesla",
    ]
    # Without a visible GPU the runtime cannot read a brand, and brand conditions pass.
    assert requirement.evaluate(value, host("535.104.05")).satisfied
    assert not requirement.evaluate(value, host("525.60.13")).satisfied


def test_each_visible_gpu_must_pass() -> None:
    value = requirement.parse("arch>=8.0")
    facts = host("550.54.14")
    assert requirement.evaluate(value, facts, [Device("8.0", None), Device("9.0", None)]).satisfied
    mixed = requirement.evaluate(value, facts, [Device("8.0", None), Device("7.5", None)])
    assert mixed == requirement.Verdict(False, (Condition("arch", ">=", "8.0"),))
    assert requirement.evaluate(value, facts).satisfied
    tesla = [Device("8.0", "Tesla")]
    assert requirement.evaluate(requirement.parse("brand=TESLA"), facts, tesla).satisfied


def test_facts_the_runtime_cannot_read_pass() -> None:
    unknown = Driver(None, None)
    assert requirement.evaluate(requirement.parse("cuda>=99.0,driver>=999"), unknown).satisfied
    no_arch = [Device(None, None)]
    assert requirement.evaluate(
        requirement.parse("arch>=99.0"), host("550.54.14"), no_arch
    ).satisfied


def test_an_alternative_of_commas_keeps_the_verdict_so_far() -> None:
    facts = host("535.104.05")
    assert requirement.evaluate(requirement.parse(""), facts).satisfied
    assert requirement.evaluate(requirement.parse(","), facts).satisfied
    assert not requirement.evaluate(requirement.parse("cuda>=99.0 , cuda>=1.0"), facts).satisfied
    assert requirement.evaluate(requirement.parse("cuda>=99.0 cuda>=1.0 ,"), facts).satisfied
