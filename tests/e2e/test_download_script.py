"""download_ckpts.sh: files already present are not downloaded again."""
import os
import subprocess

import pytest

from tests.helpers.runutil import REPO


@pytest.mark.slow
def test_download_script_skips_what_is_present(tmp_path):
    script = tmp_path / "download_ckpts.sh"
    script.write_text(open(os.path.join(REPO, "download_ckpts.sh")).read())
    (tmp_path / "download_ckpts" / "cifar_teachers" / "resnet56_vanilla").mkdir(parents=True)
    (tmp_path / "download_ckpts" / "cifar_teachers" / "resnet56_vanilla" / "ckpt_epoch_240.pth").write_bytes(b"x")
    env = dict(os.environ, PATH="/usr/bin:/bin")
    result = subprocess.run(["bash", str(script), "--teachers-only"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "have download_ckpts/cifar_teachers" in result.stdout
    assert "downloading" not in result.stdout
