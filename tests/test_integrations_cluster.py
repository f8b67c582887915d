"""PereGRM groups across reward workers, the way verl routes samples: each finished
sample goes to a reward worker picked at random, so the replies of one prompt are
judged in several processes at once. Each worker here is a thread with its own
event loop calling verl's entry point (on main, one event loop's state was one
worker's state); a slow test runs the workers as real Ray actors. Also: caches
sized from the batch (1,024 prompts per step through one worker and through the
server's service), and the coordinator's lease protocol."""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections import Counter

import pytest
from scale_helpers import ScriptedJudge, bench_batch

from attunement.integrations import verl
from attunement.integrations.coordinator import GroupBook, LocalCoordinator
from attunement.integrations.groups import ScoringPolicy
from attunement.integrations.outcomes import key

pytest.importorskip("pyarrow")

SOLUTION = "# Analysis\nShe feels unseen at work.\n\n# Response\nThat sounds exhausting, and it makes sense."
ROUND = key("criteria_round")


@pytest.fixture(autouse=True)
def _close_background():
    yield
    verl.shutdown()


class Workers:
    """``n`` reward workers: a thread and an event loop each, as many loops as
    verl has reward-loop actors."""

    def __init__(self, n: int):
        self.loops = [asyncio.new_event_loop() for _ in range(n)]
        self.threads = [
            threading.Thread(target=loop.run_forever, daemon=True) for loop in self.loops
        ]
        for t in self.threads:
            t.start()

    def run(self, worker: int, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loops[worker])

    def close(self) -> None:
        for i, loop in enumerate(self.loops):
            self.run(i, verl.aclose()).result(30)
            loop.call_soon_threadsafe(loop.stop)
        for t in self.threads:
            t.join(10)


def kwargs_for(judge: ScriptedJudge, **more):
    return {
        "reward": "peregrm@1",
        "judge": judge.spec,
        "overrides": {"output": "text", "use_bystander": False},
        "group_size": 8,
        "coordinator": "local",
        **more,
    }


def call(row, judge, **more):
    return verl.compute_score_async(
        data_source=row["data_source"],
        solution_str=SOLUTION,
        ground_truth=row["reward_model"]["ground_truth"],
        extra_info=row["extra_info"],
        **kwargs_for(judge, **more),
    )


def test_eight_workers_in_random_order_write_one_criteria_set_per_group_per_round():
    """12 prompts x 8 replies per step, 3 epochs, every reply to a random worker of 8,
    in random order: 1 criteria set per group and round, no group judged under two
    rounds, a new round every epoch."""
    examples, _ = bench_batch(12, 1)
    rows = asyncio.run(verl.verl_rows(examples))
    judge = ScriptedJudge()
    rng = random.Random(7)
    workers = Workers(8)
    rounds: dict[tuple[str, int], set[float]] = {}
    try:
        for epoch in range(3):
            calls = [(i, rng.randrange(8)) for i in range(len(rows)) for _ in range(8)]
            rng.shuffle(calls)
            futures = [(i, workers.run(w, call(rows[i], judge))) for i, w in calls]
            for i, future in futures:
                result = future.result(60)
                rounds.setdefault((examples[i].example_id, epoch), set()).add(result[ROUND])
    finally:
        workers.close()
    requests = judge.criteria_requests()
    groups = len(examples) * 3
    # each (example, dimension, round) criteria request was sent once, and there is one
    # per dimension for every group of every epoch: 1.00 criteria sets per group
    assert set(requests.values()) == {1}
    assert len(requests) == groups * 3
    assert all(len(r) == 1 for r in rounds.values())  # no mixed-round group
    for example in examples:
        per_epoch = [next(iter(rounds[(example.example_id, e)])) for e in range(3)]
        assert per_epoch == [1.0, 2.0, 3.0]


#: prompts per step: past the reward's own memo (512 criteria sets, 170 prompts), and
#: the size the issue names (slow: about 20 s)
STEP_SIZES = [256, pytest.param(1024, marks=pytest.mark.slow)]


@pytest.mark.parametrize("n", STEP_SIZES)
def test_a_step_of_many_prompts_through_one_worker_writes_criteria_once_per_group(n):
    """The replies of a step stream in as the rollouts finish, interleaved (every
    prompt's first reply, then every prompt's second), 32 in flight: with the caches
    sized from the batch, 1.00 criteria sets per group and nothing evicted."""
    examples, _ = bench_batch(n, 1)
    rows = asyncio.run(verl.verl_rows(examples))
    judge = ScriptedJudge()
    # the hacking monitor's probe rounds (every 640 replies by default) write criteria
    # for their own copies: off here, where only the training traffic is counted
    settings = {"group_size": 2, "prompts_per_step": n, "monitor": {"every": 0}}

    async def step():
        gate = asyncio.Semaphore(32)

        async def one(row):
            async with gate:
                return await call(row, judge, **settings)

        results = await asyncio.gather(*(one(row) for row in rows + rows))
        assert {r[ROUND] for r in results} == {1.0}
        stats = await verl.coordinator_for(
            verl.settings_from_kwargs(kwargs_for(judge, **settings))
        ).stats()
        await verl.aclose()
        return stats

    stats = asyncio.run(step())
    assert len(judge.criteria_log) / n == 3  # 3 dimensions: 1.00 criteria set per group
    assert stats.groups_evicted == 0 and stats.answers_evicted == 0
    assert stats.answers_written == 3 * n


@pytest.mark.parametrize("n", STEP_SIZES)
def test_the_servers_service_holds_a_step_of_many_prompts(n):
    """attune serve faces OpenRLHF batches of about 1,024 prompts: the same sizing."""
    from attunement.integrations.server import ServeSettings
    from attunement.integrations.server.service import open_service
    from attunement.judging import RewardSpec

    examples, _ = bench_batch(n, 1)
    judge = ScriptedJudge()
    spec = RewardSpec(
        reward="peregrm@1", judge=judge.spec, overrides={"output": "text", "use_bystander": False}
    )
    settings = ServeSettings(
        group_size=2, prompts_per_step=n, log_level="warning", monitor={"every": 0}
    )  # no probe rounds (they write criteria for their own copies)
    prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"

    async def run():
        async with open_service(
            spec, settings, examples={e.example_id: e for e in examples}
        ) as svc:
            for _ in range(2):
                await asyncio.gather(
                    *(
                        svc.get_reward(
                            {
                                "query": [prompt + SOLUTION],
                                "prompts": [prompt],
                                "labels": [e.example_id],
                            }
                        )
                        for e in examples
                    )
                )
            return await svc.coordinator.stats()

    stats = asyncio.run(run())
    assert len(judge.criteria_log) / n == 3
    assert stats.groups_evicted == 0 and stats.answers_evicted == 0


def test_lease_protocol_one_writer_waiters_read_a_failed_writer_hands_over():
    book = GroupBook(ScoringPolicy(prompts_per_step=1, cache_steps=1))  # 6 answers held
    coordinator = LocalCoordinator(book)

    async def run():
        first = await coordinator.lease("a", wait=5)  # None: this caller writes
        waiter = asyncio.ensure_future(coordinator.lease("a", wait=5))
        await asyncio.sleep(0.01)
        assert not waiter.done()  # waits for the writer
        await coordinator.publish("a", ["criteria"])
        got = await waiter
        again = await coordinator.lease("a", wait=5)
        # a writer that fails hands the request to one waiter, who writes it
        assert await coordinator.lease("b", wait=5) is None
        second = asyncio.ensure_future(coordinator.lease("b", wait=5))
        await asyncio.sleep(0.01)
        await coordinator.publish("b", None)
        handed = await second
        for i in range(10):  # past the capacity: the oldest answers are evicted
            assert await coordinator.lease(f"x{i}", wait=5) is None
            await coordinator.publish(f"x{i}", [i])
        return first, got, again, handed, await coordinator.stats()

    first, got, again, handed, stats = asyncio.run(run())
    assert first is None and got == ("criteria",) and again == ("criteria",)
    assert handed is None
    assert stats.answers_written == 11 and stats.answers_shared == 2
    assert stats.answers == 6 and stats.answers_evicted == 5


def test_evicting_an_open_group_is_counted():
    book = GroupBook(ScoringPolicy(group_size=8, max_groups=2))
    for name in ("a", "b", "c"):
        book.join(name, 1)
    stats = book.snapshot()
    assert stats.groups_evicted == 1 and stats.open_groups_evicted == 1
    assert book.join("a", 1).criteria_round == 1  # evicted: it starts over


@pytest.mark.slow
def test_eight_ray_actors_share_one_coordinator():
    """The real thing: 8 Ray actors (processes) calling compute_score_async with
    coordinator=auto find one named actor and write criteria once per group."""
    ray = pytest.importorskip("ray")
    examples, _ = bench_batch(4, 1)
    rows = asyncio.run(verl.verl_rows(examples))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        @ray.remote(num_cpus=0)
        class Worker:
            def __init__(self):
                import scale_helpers

                self.judge = scale_helpers.ScriptedJudge()

            async def score(self, row):
                return await verl.compute_score_async(
                    data_source=row["data_source"],
                    solution_str=SOLUTION,
                    ground_truth=row["reward_model"]["ground_truth"],
                    extra_info=row["extra_info"],
                    **kwargs_for(self.judge, coordinator="auto"),
                )

            def criteria(self):
                return [str(m) + str(s) for m, s in self.judge.criteria_log]

        import pathlib

        path = os.pathsep.join(
            [str(pathlib.Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        )
        workers = [
            Worker.options(runtime_env={"env_vars": {"PYTHONPATH": path}}).remote()
            for _ in range(8)
        ]
        rng = random.Random(3)
        refs = []
        for epoch in range(2):
            calls = [(i, rng.randrange(8)) for i in range(len(rows)) for _ in range(8)]
            rng.shuffle(calls)
            results = ray.get([workers[w].score.remote(rows[i]) for i, w in calls], timeout=300)
            refs.append(Counter(r[ROUND] for r in results))
        written = [c for w in workers for c in ray.get(w.criteria.remote())]
    finally:
        ray.shutdown()
    assert refs == [Counter({1.0: 32}), Counter({2.0: 32})]
    # every worker has its own judge client; together they sent each criteria request once
    assert len(written) == len(set(written)) == len(examples) * 2 * 3
