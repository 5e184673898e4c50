"""The tests' upstream-format datasets and loopback server: they live in the library
(:mod:`lffood.data.upstream`), which the rehearsal of the paper benchmarks uses too."""

from lffood.data.upstream import (FixtureServer, bomb_png, cifar_tgz, dtd_tgz, ilsvrc_folder, jpeg,  # noqa: F401
                                  md5, mos_tgz, odin_tgz, places_tar, svhn_mat, tar_bytes)
