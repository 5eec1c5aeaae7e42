"""The one build step pyproject.toml cannot state: ship `crpo_bench_lmeval.pth`.

A .pth file at the top of site-packages runs at every interpreter start; ours imports
crpo_bench.lmeval_hook, which lets a plain `lm_eval --tasks muce_poems` find our tasks
(lm-eval 0.4.13 has no plugin mechanism for tasks). Everything else, the package-dir
mapping of training/ and tasks/ included, lives in pyproject.toml.
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "crpo_bench_lmeval.pth"
PTH_LINE = "import crpo_bench.lmeval_hook\n"


class build_py_with_lmeval_hook(build_py):
    def run(self):
        # setuptools packs build/lib whole: a file left there by an earlier build (a module since
        # deleted or moved) would ship in the next wheel. Start from an empty build/lib.
        if not self.editable_mode and _inside(self.build_lib, "build"):
            shutil.rmtree(self.build_lib, ignore_errors=True)
        super().run()
        # A wheel packs build_lib whole. An editable install builds nothing there: setuptools
        # writes what is not editable straight into the wheel it makes, which is install_lib.
        root = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        os.makedirs(root, exist_ok=True)
        with open(os.path.join(root, PTH_NAME), "w", encoding="utf-8") as pth:
            pth.write(PTH_LINE)


def _inside(path: str, folder: str) -> bool:
    return os.path.abspath(path).startswith(os.path.abspath(folder) + os.sep)


setup(cmdclass={"build_py": build_py_with_lmeval_hook})
