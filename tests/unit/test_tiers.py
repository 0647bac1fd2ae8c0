"""The tiers run as the README says: every end-to-end file is marked slow, so `-m "not slow"`
leaves out every run through Ray."""

from pathlib import Path

E2E = Path(__file__).parents[1] / "e2e"


def test_every_end_to_end_file_is_marked_slow():
    files = sorted(E2E.glob("test_*.py"))
    assert len(files) >= 10
    unmarked = [f.name for f in files if "\npytestmark = pytest.mark.slow\n" not in f.read_text()]
    assert unmarked == [], f"mark these slow (pytestmark = pytest.mark.slow): {unmarked}"
