"""The review page's HTTP surface (Starlette's test client, the real app): the token,
escaping of model text, filters, and answers saved as human verdicts."""

import pytest
from review_runs import write_pointwise_run
from starlette.testclient import TestClient

from rlaif_ray.judge.rubric import DEFAULT_DIMENSIONS
from rlaif_ray.review.queue import merged_verdicts
from rlaif_ray.review.server import COOKIE, ReviewSite, create_app
from rlaif_ray.storage import StoragePath

TOKEN = "t0ken"


@pytest.fixture
def client(pointwise_run):
    run_dir, rubric = pointwise_run
    app = create_app(ReviewSite(StoragePath.of(run_dir), rubric, TOKEN))
    return TestClient(app, base_url="http://127.0.0.1")


def authed(client):
    client.cookies.set(COOKIE, TOKEN)
    return client


def test_nothing_is_served_without_the_token(client):
    for path in ("/", "/api/queue"):
        assert client.get(path).status_code == 403
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.post("/api/verdicts", json={}).status_code == 403
    opened = client.get("/?token=" + TOKEN + "&iteration=0", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/?iteration=0"
    assert COOKIE in opened.cookies
    assert client.get("/api/queue", headers={"Authorization": "Bearer " + TOKEN}).is_success


def test_the_page_shows_model_text_as_text(client):
    page = authed(client).get("/?item=0:b").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('data-review-id="') == 4  # three in the list, one shown


def test_the_queue_api_filters(client):
    items = authed(client).get("/api/queue?iteration=0&dimension=factual_accuracy").json()
    assert [e["review_id"] for e in items["items"]] == ["0:a"]
    assert items["dimensions"] == list(DEFAULT_DIMENSIONS)
    assert client.get("/api/queue?iteration=x").status_code == 400


def test_answers_become_human_verdicts_once(client, pointwise_run):
    run_dir, _ = pointwise_run
    answer = {"review_id": "0:a", "reviewer": "ann",
              "scores": {d: 7 for d in DEFAULT_DIMENSIONS}}
    authed(client)
    assert client.post("/api/verdicts", json=answer).json() == {"written": 1, "skipped": 0}
    assert client.post("/api/verdicts", json=answer).json() == {"written": 0, "skipped": 0}
    row = next(v for v in merged_verdicts(run_dir, 0, "pointwise") if v.item_id == "a")
    assert row.source == "human" and row.reviewer == "ann"
    bad = client.post("/api/verdicts", json={"answers": [{**answer, "review_id": "0:b"},
                                                         {**answer, "review_id": "9:z"}]})
    assert bad.status_code == 400 and "answer 1: unknown review_id '9:z'" in bad.json()["error"]
    form = client.post("/api/verdicts", content=b"review_id=0:b",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415  # no cross-site form posts
    assert [e["review_id"] for e in client.get("/api/queue").json()["items"]] == ["1:d", "0:b"]


@pytest.mark.slow
def test_the_page_reviews_a_run_directory_on_an_object_store(s3_env):
    import uuid

    run_dir = f"s3://rlaif/review-{uuid.uuid4().hex[:8]}"
    rubric = write_pointwise_run(run_dir)
    client = TestClient(create_app(ReviewSite(StoragePath.of(run_dir), rubric, TOKEN)),
                        base_url="http://127.0.0.1")
    client.cookies.set(COOKIE, TOKEN)
    assert "&lt;script&gt;" in client.get("/?item=0:b").text
    answer = {"review_id": "0:b", "reviewer": "ann", "verdict": 9}
    assert client.post("/api/verdicts", json=answer).json()["written"] == 1
    row = next(v for v in merged_verdicts(run_dir, 0, "pointwise") if v.item_id == "b")
    assert row.source == "human" and row.reward == pytest.approx(8 / 9)


@pytest.mark.parametrize("overrides, serves", [
    (["review.mode=live"], True), (["review.mode=live", "review.serve=false"], False),
    (["review.mode=offline"], False)])
def test_a_live_run_serves_its_page_and_says_where(pointwise_run, overrides, serves):
    """What a run's start prints and serves (`serve_live_review`): live mode's page on
    loopback with its token, answering; the command instead with `review.serve` false;
    nothing offline."""
    import requests

    from rlaif_ray.config import load_config
    from rlaif_ray.review.server import serve_live_review

    run_dir, _ = pointwise_run
    said = []
    server = serve_live_review(run_dir, load_config(None, overrides), said.append)
    assert (server is not None) == serves
    if server is None:
        assert said == ([] if "review.mode=offline" in overrides else [
            "live review: people's verdicts join the next update; judge them on",
            f"  `rlaif-ray review serve {run_dir}`"])
        return
    try:
        assert said[1] == f"  {server.url}" and server.url.startswith("http://127.0.0.1:")
        queue = requests.get(server.url.replace("/?", "/api/queue?"), timeout=30).json()
        assert queue  # the run's own queue, behind the printed token
    finally:
        server.stop()
