"""Suite-wide isolation: weights and static programs go to a temporary cache, not the user's."""
import pytest


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("VSMSVSR_HOME", str(tmp_path_factory.mktemp("vsmsvsr_home")))
    yield
    mp.undo()
