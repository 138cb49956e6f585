"""Training samples for tests: `rlaif_ray.train.samples.TrainingSample` with the fields a
test does not care about filled in."""

from rlaif_ray.train.samples import TrainingSample


def sample(prompt_token_ids=(1,), response_token_ids=(2,), logprobs=None, reward=0.0,
           prompt_id="p0", policy_version=0, response_id="r0", confidence=1.0):
    """A TrainingSample; log-probs default to 0 per answer token."""
    response = list(response_token_ids)
    return TrainingSample(response_id=response_id, prompt_id=prompt_id,
                          prompt_token_ids=list(prompt_token_ids),
                          response_token_ids=response,
                          logprobs=[0.0] * len(response) if logprobs is None else logprobs,
                          reward=reward, confidence=confidence,
                          policy_version=policy_version)
