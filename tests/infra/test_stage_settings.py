"""What each deployed stage's settings in .chalice/config.json must say."""
import pytest

from app import CALLBACK_PAGE
from infra.project import stage_environment, stages


@pytest.mark.parametrize("stage", stages())
def test_stripe_sends_the_admin_straight_to_the_uis_page_in_a_deployed_stage(stage):
    """Deployed, the API's GET callback has only the query API Gateway
    decoded, and encodes it again (`%20` becomes `+`, a repeated name's
    values come together): Stripe's redirect goes to the UI's page, where the
    query arrives as Stripe wrote it, with no hop through the API."""
    environment = stage_environment(stage)
    assert environment["OAUTH_REDIRECT_URI"] == environment["APP_BASE_URL"] + CALLBACK_PAGE
