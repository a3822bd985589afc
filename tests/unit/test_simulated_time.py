"""The month-start benchmark's simulated clock (bench/simulation.py): it
moves only when every thread working under it waits, to the soonest wake-up,
and a notify wakes a waiter early."""
import threading

from bench.simulation import SimulatedTime, peak_per_second


def test_the_clock_moves_to_the_soonest_wake_up_only_when_every_worker_waits():
    clock = SimulatedTime(1000.0)
    seen = []

    def worker(name, naps):
        with clock.working(enlisted=True):
            for nap in naps:
                clock.sleep(nap)
                seen.append((name, clock.time()))

    threads = [threading.Thread(target=worker, args=("a", [1.0, 1.0])),
               threading.Thread(target=worker, args=("b", [0.5, 2.0]))]
    # Both counted before either runs: the clock waits for the second's first nap.
    for thread in threads:
        clock.enlist()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(seen, key=lambda s: (s[1], s[0])) == [("b", 1000.5), ("a", 1001.0), ("a", 1002.0), ("b", 1002.5)]
    assert clock.time() == 1002.5


def test_a_notify_wakes_a_waiter_before_its_time_and_the_clock_stays():
    clock = SimulatedTime(0.0)
    signal = []
    woke = []

    def listener():
        with clock.working(enlisted=True):
            clock.sleep(20.0, signal=signal)
            woke.append(clock.time())

    thread = threading.Thread(target=listener)
    clock.enlist()
    with clock.working():
        thread.start()
        clock.sleep(3.0)
        clock.notify(signal)
    thread.join(timeout=10)
    assert woke == [3.0]
    assert clock.time() == 3.0


def test_the_peak_counts_requests_within_any_one_second():
    assert peak_per_second([0.0, 0.5, 0.99, 1.0, 1.2, 5.0]) == 4
    assert peak_per_second([]) == 0
