"""The evolution's selection, steer and stop rules (host/evolve/steering.py), each on its own and in their order."""
import pytest

from host.evolve.config import EvolveConfig
from host.errors import HostError
from host.evolve.steering import (Step, fitness, next_env_factor, next_step, size_env_factor, speed_target_met,
                           steer_by_size, top1_below_floor)


def test_speed_steering_is_harsher_the_further_from_the_target_and_never_below_the_floor():
    assert next_env_factor(100, 400, 0.3, 0.93) == pytest.approx(0.5)
    assert next_env_factor(100, 10_000, 0.3, 0.93) == 0.3  # floor
    assert next_env_factor(390, 400, 0.3, 0.93) == 0.93  # near the target: the configured R
    factors = [next_env_factor(f, 1000, 0.2, 0.95) for f in (50, 100, 200, 400, 800)]
    assert factors == sorted(factors)
    with pytest.raises(HostError, match="must be > 0"):
        next_env_factor(0, 400, 0.3, 0.93)


def test_speed_target_is_met_at_or_above_the_target():
    assert speed_target_met(2, 399.4, 400) is None
    assert speed_target_met(2, 400, 400) == "target 400 fps met by generation 2 (400 fps)"
    assert speed_target_met(0, 2500.6, 1) == "target 1 fps met by generation 0 (2501 fps)"


def test_size_steering_lands_on_the_target_in_expectation_and_stops_once_there():
    assert size_env_factor(4e6, 1e6, 2) == pytest.approx(0.5) and size_env_factor(1e6, 2e6, 3) is None
    # (1/4) ** (1/2) = 0.5 is harsher than R = 0.93: it wins; above the floor
    assert steer_by_size(1, 4e6, 1.0, 2, 0.93, 0.3) == Step(pytest.approx(0.5), None)
    assert steer_by_size(1, 4e6, 1.0, 2, 0.93, 0.6) == Step(0.6, None)  # never below the floor
    assert steer_by_size(1, 1.05e6, 1.0, 5, 0.93, 0.3) == Step(0.93, None)  # a milder budget keeps R
    assert steer_by_size(3, 0.9e6, 1.0, 2, 0.93, 0.3) == Step(0.93, "size target 1 MB met by generation 3")


def test_top1_floor_stops_below_it_and_is_off_at_zero():
    assert top1_below_floor(4, 0.42, 0.5) == "top-1 42.0 % of generation 4 fell below the floor 50.0 %"
    assert top1_below_floor(4, 0.5, 0.5) is None
    assert top1_below_floor(4, 0.0, 0.0) is None


def test_fitness_prefers_top1_then_the_smaller_and_adds_the_speed_bonus():
    small, large = {"top1": 0.5, "params": 10}, {"top1": 0.5, "params": 20}
    assert max([large, small], key=lambda r: fitness(r, 0.0, 0.0)) is small
    slow = {"top1": 0.6, "params": 10, "local_fps": 100}
    fast = {"top1": 0.5, "params": 10, "local_fps": 1000}
    assert fitness(slow, 0.5, 1000) == (pytest.approx(0.65), -10)
    assert max([slow, fast], key=lambda r: fitness(r, 0.5, 1000)) is fast  # 0.5 + 0.5 > 0.6 + 0.05


ROW = {"size_bytes": 4e6, "top1": 0.6}


def test_next_step_without_targets_keeps_r_and_goes_on():
    assert next_step(EvolveConfig(env_factor=0.9), 1, ROW, None, 0.9) == Step(0.9, None)


def test_next_step_steers_by_speed_unless_fixed():
    config = EvolveConfig(target_fps=400, env_floor=0.3, env_factor=0.93)
    assert next_step(config, 1, ROW, 100, 0.93) == Step(pytest.approx(0.5), None)
    config.steer = False
    assert next_step(config, 1, ROW, 100, 0.93) == Step(0.93, None)
    assert next_step(config, 1, ROW, 400, 0.93).stop_reason.startswith("target 400 fps met")


def test_next_step_size_rule_runs_after_speed_and_not_once_stopped_or_at_the_last_generation():
    config = EvolveConfig(target_fps=400, target_mb=1.0, env_floor=0.1, env_factor=0.93, generations=3)
    # after generation 1 (two left) size asks (1/4) ** (1/2) = 0.5; the harsher of the two rules wins
    assert next_step(config, 1, ROW, 200, 0.93).env_factor == pytest.approx(0.5)  # speed asked 0.71
    assert next_step(config, 1, ROW, 25, 0.93).env_factor == pytest.approx(0.25)  # speed asked 0.25
    assert next_step(config, 2, ROW, 390, 0.93).env_factor == pytest.approx(0.25)  # one left: size asks 1/4
    assert next_step(config, 3, ROW, 390, 0.93) == Step(0.93, None)  # the last generation: no size rule
    met = next_step(config, 1, dict(ROW, size_bytes=0.5e6), 500, 0.93)
    assert met.stop_reason.startswith("target 400 fps met")  # stopped by speed: the size rule is not asked


def test_next_step_top1_floor_reason_wins():
    config = EvolveConfig(target_fps=400, top1_floor=0.7)
    assert next_step(config, 1, ROW, 500, 0.93).stop_reason.startswith("top-1 60.0 % of generation 1")
    assert next_step(EvolveConfig(top1_floor=0.5), 1, ROW, None, 0.93) == Step(0.93, None)


def test_a_predicted_speed_target_steers_r_and_stops_with_the_size_target():
    """--budget latency --target-speedup S: R from the latency table's prediction as the size rule does it from
    the size; with both targets, the harsher R, and the run stops only when both are met."""
    from host.evolve.steering import steer_by_predicted_speed
    step = steer_by_predicted_speed(1, predicted_ms=0.5, ancestor_ms=0.6, target_speedup=3.0, generations_left=4,
                                    env_factor=0.93, env_floor=0.3)
    assert step.stop_reason is None and step.env_factor == pytest.approx((0.2 / 0.5) ** 0.25)
    assert steer_by_predicted_speed(1, 0.19, 0.6, 3.0, 4, 0.93, 0.3).stop_reason.startswith(
        "predicted speed-up 3x met by generation 1")
    assert steer_by_predicted_speed(1, 0.59, 0.6, 30.0, 1, 0.93, 0.3).env_factor == 0.3  # clamped at the floor
    config = EvolveConfig(env_factor=0.93, env_floor=0.3, generations=5, target_mb=ROW["size_bytes"] / 2e6,
                          budget="latency", target_speedup=2.0)
    both = next_step(config, 1, ROW, None, 0.93, predicted_ms=0.5, ancestor_ms=0.6)
    size_r, speed_r = 0.5 ** 0.25, (0.3 / 0.5) ** 0.25
    assert both.stop_reason is None and both.env_factor == pytest.approx(min(size_r, speed_r))
    small = dict(ROW, size_bytes=ROW["size_bytes"] / 4)  # the size met, the speed not: go on, by the speed
    assert next_step(config, 1, small, None, 0.93, 0.5, 0.6) == Step(pytest.approx(speed_r), None)
    done = next_step(config, 1, small, None, 0.93, 0.25, 0.6)
    assert "size target" in done.stop_reason and "predicted speed-up 2x met" in done.stop_reason
    with pytest.raises(HostError, match="needs budget = 'latency'"):
        from host.evolve.config import resolve
        resolve({}, {"data": "x", "target_speedup": 2.0})
