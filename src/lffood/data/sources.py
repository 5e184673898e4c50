"""The one registry of the paper's datasets: where each archive comes from, its checksum and how it is
read. Which OOD set of which benchmark family an archive feeds is the set's entry in
:data:`lffood.names.OOD_SETS`.

Torch-free and numpy-free: the Snakefile imports it at parse time to name download targets.

Checksums: ``md5`` is a published checksum (torchvision's dataset classes, the ODIN release, the DTD
page); where none is published (``md5=None``) the sha256 of the first download is recorded in the
lock file (config ``downloads.lock_file``) and every later download or re-run is verified against it.
For the torchvision-backed archives (CIFAR-10/100, SVHN) the URL, file name and md5 used at run time
are the dataset class's own attributes (:func:`lffood.data.download.torchvision_spec`); the values
here name the files for the workflow and must agree with them (a unit test checks this), except that
a torchvision URL on plain http is fetched over https when the registry says the host serves https.

Transport: every registry URL is https; ``http_only=True`` would mark a host that serves no https
(none does today), and only then is plain http used without the user naming the URL. Redirects are
followed only to the URL's own host and to the archive's ``redirect_hosts`` (``*.example.org`` matches
any subdomain), never from https down to http (:mod:`lffood.data.download` enforces this).

Sizes: ``size`` is each file's size in bytes, exact where it is known (``size_exact``: CIFAR-10/100,
SVHN, DTD), else a generous upper bound explained at the entry. A download stops once it passes
``size x (1 + SIZE_MARGIN)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..names import SOURCES, ood_set
from ..resources import CLASS_LIST_DIR


@dataclass(frozen=True)
class Archive:
    key: str
    url: str
    filename: str
    md5: str | None
    #: how the archive is read: ``cifar`` / ``svhn`` (the pickle batches / the .mat, read directly) or ``tar`` (images
    #: are read straight from the tar members; every image file in the archive belongs to the set)
    kind: str
    description: str
    #: torchvision dataset class that owns url/filename/md5 (``None`` for the others)
    torchvision: str | None = None
    #: where the checksum comes from (README and ``lffood download --list``)
    checksum_source: str = ""
    #: hosts a download may be redirected to besides the URL's own (``*.x.org`` = any subdomain of x.org)
    redirect_hosts: tuple[str, ...] = ()
    #: the host serves no https: plain http is allowed for the registry URL (the checksum is the only
    #: protection then). False for every archive today; kept so the rule is explicit.
    http_only: bool = False
    #: expected size of the file in bytes: exact where ``size_exact``, else a documented upper bound
    #: (the comment at the entry says why). A download stops past ``size x (1 + SIZE_MARGIN)``
    #: (:func:`lffood.data.download.size_limit`; ``downloads.max_bytes.<key>`` overrides it for a mirror
    #: that serves a larger file). 0 = unknown (refused by the registry's unit test).
    size: int = 0
    size_exact: bool = False
    #: the published start of the file's sha256 (torchvision's weight files carry 8 hex digits in their
    #: name): checked after the download unless the user pins a checksum of their own
    sha256_prefix: str | None = None


#: A download may run this fraction past the registry's ``size`` before it is stopped: slack for an
#: upper bound that is slightly off, not for another file (that is what ``downloads.max_bytes`` is for).
SIZE_MARGIN = 0.10

#: Dropbox answers ``/s/raw/...`` with a redirect to a content host under dropboxusercontent.com
#: (sometimes via ``/scl/fi/...`` on www.dropbox.com itself).
_DROPBOX = ("www.dropbox.com", "dl.dropbox.com", "*.dropboxusercontent.com")

#: Upper bound for the ODIN sets (exact sizes not published): 10,000 images of at most 36x36 (iSUN:
#: 8,925) take under 50 MB even stored as raw RGB with a 1 KB tar header and padding each; the released
#: JPEGs in a tar.gz are far smaller.
_ODIN_BOUND = 64 << 20
#: Upper bound for the MOS sets (exact sizes not published and not available here): 10,000 photos at
#: 500 KB each on average, above what web-sized scene and species photos take. After the first download
#: the lock file holds the exact size, which then is the limit (:func:`lffood.data.download.size_limit`).
_MOS_BOUND = 5_000_000_000

ARCHIVES: dict[str, Archive] = {a.key: a for a in [
    Archive("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a", "cifar", "CIFAR-10 (python pickle batches)",
            torchvision="CIFAR10", checksum_source="torchvision.datasets.CIFAR10.tgz_md5",
            size=170_498_071, size_exact=True),
    Archive("cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85", "cifar", "CIFAR-100 (python pickle batches)",
            torchvision="CIFAR100", checksum_source="torchvision.datasets.CIFAR100.tgz_md5",
            size=169_001_437, size_exact=True),
    Archive("svhn", "https://ufldl.stanford.edu/housenumbers/test_32x32.mat", "test_32x32.mat",
            "eb5a983be6a315427106f1b164d9cef3", "svhn", "SVHN test split (26,032 images, MATLAB file)",
            torchvision="SVHN", checksum_source="torchvision.datasets.SVHN.split_list['test']",
            size=64_275_384, size_exact=True),
    Archive("lsun_crop", "https://www.dropbox.com/s/raw/fhtsw1m3qxlwj6h/LSUN.tar.gz", "LSUN.tar.gz",
            "458a0a0ab8e5f1cb4516d7400568e460", "tar", "LSUN-Crop, 10,000 32x32 crops (ODIN release)",
            checksum_source="ODIN release (facebookresearch/odin)", redirect_hosts=_DROPBOX, size=_ODIN_BOUND),
    Archive("lsun_resize", "https://www.dropbox.com/s/raw/moqh2wh8696c3yl/LSUN_resize.tar.gz", "LSUN_resize.tar.gz",
            "278b7b31c8cb7e804a1465a8ce03a2dc", "tar", "LSUN-Resize, 10,000 images resized to 32x32 (ODIN release)",
            checksum_source="ODIN release (facebookresearch/odin)", redirect_hosts=_DROPBOX, size=_ODIN_BOUND),
    Archive("isun", "https://www.dropbox.com/s/raw/ssz7qxfqae0cca5/iSUN.tar.gz", "iSUN.tar.gz",
            None, "tar", "iSUN, 8,925 images at 32x32 (ODIN release)", redirect_hosts=_DROPBOX, size=_ODIN_BOUND),
    Archive("dtd", "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz", "dtd-r1.0.1.tar.gz",
            "fff73e5086ae6bdbea199a49dfb8a4c1", "tar", "Describable Textures r1.0.1, 5,640 images (dtd/images/)",
            checksum_source="torchvision.datasets.DTD._MD5",
            # the VGG group serves its data sets from thor.robots.ox.ac.uk
            redirect_hosts=("thor.robots.ox.ac.uk",), size=625_239_812, size_exact=True),
    Archive("places365", "https://data.csail.mit.edu/places/places365/test_256.tar", "test_256.tar",
            "f532f6ad7b582262a2ec8009075e186b", "tar", "Places365 test_256 (328,500 images at 256x256)",
            checksum_source="torchvision.datasets.Places365._IMAGES_META[('test', True)]",
            # upper bound: the Places365 download page lists test_256.tar as "4.4G" (GB or GiB, 4.4e9 or
            # 4.72e9 bytes); the exact byte count was not available here
            size=4_800_000_000),
    Archive("inaturalist", "https://pages.cs.wisc.edu/~huangrui/imagenet_ood_dataset/iNaturalist.tar.gz",
            "iNaturalist.tar.gz", None, "tar", "iNaturalist OOD subset of MOS, 10,000 images", size=_MOS_BOUND),
    Archive("sun", "https://pages.cs.wisc.edu/~huangrui/imagenet_ood_dataset/SUN.tar.gz", "SUN.tar.gz",
            None, "tar", "SUN OOD subset of MOS, 10,000 images", size=_MOS_BOUND),
    Archive("places", "https://pages.cs.wisc.edu/~huangrui/imagenet_ood_dataset/Places.tar.gz", "Places.tar.gz",
            None, "tar", "Places OOD subset of MOS, 10,000 images", size=_MOS_BOUND),
    # model weights (a variant's ``init: imagenet1k``): torchvision's ResNet50_Weights.IMAGENET1K_V1.
    # torchvision publishes the first 8 hex digits of the file's sha256 (its name) and 97.781 MiB; no md5:
    # trusted on first use over https, the recorded sha256 checked to start with 0676ba61.
    Archive("resnet50_imagenet1k", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
            "resnet50-0676ba61.pth", None, "weights",
            "torchvision ResNet-50 ImageNet-1k weights (IMAGENET1K_V1: 76.13% top-1), a torch state_dict",
            checksum_source="torchvision.models.ResNet50_Weights.IMAGENET1K_V1 (sha256 prefix 0676ba61 in the name)",
            size=103_000_000, sha256_prefix="0676ba61"),
]}

#: ``model.arch`` -> the archive of its ImageNet-1k weights (a variant's ``init: imagenet1k``).
IMAGENET1K_WEIGHTS = {"resnet50": "resnet50_imagenet1k"}

#: ID source -> archive (ImageNet-100 has none: it is built from the user's ILSVRC-2012 folder).
ID_ARCHIVE = {"cifar10": "cifar10", "cifar100": "cifar100"}
PAPER_SOURCES = tuple(s for s in SOURCES if s != "embedded")

#: File name extensions of images inside archives (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".gif", ".webp")


def archive(key: str) -> Archive:
    try:
        return ARCHIVES[key]
    except KeyError:
        raise KeyError(f"unknown dataset archive {key!r}; known: {sorted(ARCHIVES)}") from None


def downloads_dir(cfg: Mapping) -> str:
    """``downloads.dir`` of a validated config, ``{data_dir}/downloads`` when it is null."""
    d = cfg.get("downloads", {}).get("dir")
    return d if d else f"{cfg['data_dir']}/downloads"


def archive_path(cfg: Mapping, key: str) -> str:
    """Where the archive ``key`` is downloaded to, and where to place it by hand when offline."""
    return f"{downloads_dir(cfg)}/{key}/{archive(key).filename}"


def init_weights_path(cfg: Mapping, model: Mapping, init: str | None) -> str | None:
    """The file a variant's ``init`` loads: the downloaded ImageNet-1k weights of ``model.arch`` for
    ``imagenet1k``, else the path given (None: no initial weights)."""
    if init == "imagenet1k":
        return archive_path(cfg, IMAGENET1K_WEIGHTS[model["arch"]])
    return init


def mirror_url(cfg: Mapping, key: str) -> str | None:
    """The URL the user named in ``downloads.urls.<key>`` (a mirror), or None."""
    return (cfg.get("downloads", {}).get("urls") or {}).get(key) or None


def archive_url(cfg: Mapping, key: str) -> str:
    """The config's override (``downloads.urls.<key>``) or the registry's URL."""
    return mirror_url(cfg, key) or archive(key).url


def ood_archive(source: str, name: str) -> str:
    """The archive the OOD set ``name`` of a ``source`` benchmark is read from (its
    :data:`lffood.names.OOD_SETS` entry); KeyError for a set that is not downloaded."""
    key = ood_set(source, name).archive
    if key is None:
        raise KeyError(f"OOD set {name!r} of dataset source {source!r} is generated, not downloaded")
    return key


def is_image_member(name: str) -> bool:
    """An image file inside an archive (skips macOS resource forks and hidden files)."""
    p = PurePosixPath(name)
    if any(part.startswith(".") or part == "__MACOSX" for part in p.parts):
        return False
    return p.suffix.lower() in IMAGE_EXTENSIONS


# ----------------------------------------------------------------------------- ImageNet-100
#: Shipped ImageNet-100 class lists (100 WNIDs each): ``I`` = deeplearning-wisc/MCM (also CIDER,
#: TagFog "I"), ``II`` = FodFoM / TagFog "II": package data in ``CLASS_LIST_DIR`` (:mod:`lffood.resources`),
#: whose README.md gives their provenance.
CLASS_LISTS = ("I", "II")
VALPREP_URL = "https://raw.githubusercontent.com/soumith/imagenetloader.torch/master/valprep.sh"
#: The ILSVRC-2012 devkit, placed in ``imagenet_root`` (the name and place torchvision.datasets.ImageNet
#: uses): its ground truth labels a flat ``val/``. Only these two members are read, in memory.
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_META = "ILSVRC2012_devkit_t12/data/meta.mat"
DEVKIT_GROUND_TRUTH = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"


def class_list_path(name: str) -> Path:
    if name not in CLASS_LISTS:
        raise KeyError(f"unknown ImageNet-100 class list {name!r}; choose from {CLASS_LISTS}")
    return CLASS_LIST_DIR / f"class_list_{name}.txt"


def read_class_list(name: str) -> list[str]:
    path = class_list_path(name)
    wnids = [w.strip() for w in path.read_text().split() if w.strip()]
    if len(wnids) != 100 or len(set(wnids)) != 100:
        raise ValueError(f"{path}: expected 100 distinct WNIDs, found {len(set(wnids))}")
    return wnids


def flat_val(root: str | Path, wnids) -> bool:
    """Whether ``<root>/val`` holds the validation images flat, as ILSVRC-2012 ships them
    (``val/ILSVRC2012_val_00000001.JPEG`` ...), rather than sorted into ``val/<wnid>/``. Cheap."""
    d = Path(root).expanduser() / "val"
    return not (d / wnids[0]).is_dir() and any(d.glob("ILSVRC2012_val_*.JPEG"))


def check_imagenet_root(root: str | None, wnids: list[str], key: str = "dataset.imagenet_root") -> list[str]:
    """Problems with an ILSVRC-2012 folder (empty list when it looks usable). Cheap: directory checks
    and the existence of the devkit, so it can run while Snakemake builds the job graph; the devkit's
    contents are read when the test split is built."""
    if not root:
        return [f"config key '{key}' is not set. Set it to your ILSVRC-2012 folder, the one holding "
                f"train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, or val/ILSVRC2012_val_*.JPEG flat with {DEVKIT} "
                f"beside train/ and val/ (ImageNet cannot be downloaded automatically: "
                f"get it from https://image-net.org under its licence)."]
    r = Path(root).expanduser()
    if not r.is_dir():
        return [f"config key '{key}' is {root!r}, which is not an existing folder. Point it at your "
                f"ILSVRC-2012 folder (with train/<wnid>/ and val/ inside)."]
    problems = []
    for split in ("train", "val"):
        d = r / split
        if not d.is_dir():
            problems.append(f"{d} does not exist: config key '{key}' must name the folder holding train/ and val/.")
            continue
        if split == "val" and flat_val(r, wnids):
            if not (r / DEVKIT).is_file():
                problems.append(f"{d} holds the validation images flat (ILSVRC2012_val_*.JPEG), but their labels "
                                f"are missing. Either place the ILSVRC-2012 devkit (from image-net.org) at "
                                f"{r / DEVKIT}, or sort the images into one folder per WNID: run {VALPREP_URL} "
                                f"inside {d}.")
            continue
        missing = [w for w in wnids if not (d / w).is_dir()]
        if missing:
            problems.append(f"{d}: {len(missing)} of the 100 ImageNet-100 classes have no folder "
                            f"(first: {missing[:5]}). Check config key '{key}' and dataset.class_list.")
    return problems
