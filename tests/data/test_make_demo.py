import subprocess
import sys


def test_demo_data_regenerates_byte_identical(repo):
    res = subprocess.run([sys.executable, str(repo / "data" / "make_demo.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
