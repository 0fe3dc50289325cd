"""What the viewer is told about a study: the one JSON list of its series and images (built
from the database alone), the image to show first, and the page's own settings."""

import time
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import reverse

from phr.vault import access, blobs, browse
from phr.vault.models import Instance, Series, Study
from viewer import securelink

# Files per batch request. Handing out signed links (S3 presigned URLs, nginx secure links) is
# all Django does for a file that the object store or nginx then serves, so the batch request is
# most of Django's work per image: 100 links a request halved it against 50. Streamed from the
# file system, 50 files a request loaded a 300-slice stack fastest (the decoding of a batch
# starts with its first file, but the next request waits for its last one).
LINKS_PER_BATCH = 100
FILES_PER_STREAMED_BATCH = 50
# 100 IDs as 32 hex digits each (the viewer leaves out the dashes) keep the request line under
# the 4,094 bytes that gunicorn accepts.
MAX_BATCH = LINKS_PER_BATCH


def study_images(study: Study, comparisons, *, with_links: bool = False) -> dict:
    """Every series of `study` with its ordered instances, and the studies to compare with.

    Built from the database alone: no file is opened, so the list is as fast for 3,000 images
    as for 3. `comparisons` is the caller's queryset of other studies it may see;
    `with_links`: list each image's nginx secure link too (for the patient only, see below).
    """
    series_list = list(Series.objects.filter(study=study).order_by("number", "created_at"))
    by_series: dict = {series.pk: [] for series in series_list}
    # Behind nginx with secure links, each image's signed link comes with the list: signing is
    # cheap (an MD5), and the viewer then fetches the whole study from nginx without asking
    # Django for a single batch. One clock reading, so that the links all expire together.
    link_time = time.time() if with_links and _nginx_serves_links() else None
    image_url, tags_url = _url_for_each("viewer:instance"), _url_for_each("viewer:instance_tags")
    instances = (
        Instance.objects.filter(series__study=study)
        .order_by("series_id", "slice_position", "instance_number", "created_at")
        .values(
            "id",
            "series_id",
            "instance_number",
            "number_of_frames",
            "rows",
            "columns",
            "slice_position",
            "display",
            "sop_class_uid",
            "storage_key",
        )
    )
    for row in instances:
        image = _instance_json(row, image_url(row["id"]), tags_url(row["id"]))
        if link_time is not None and image["has_pixels"]:
            image["link"] = securelink.url(row["storage_key"], link_time)
        by_series[row["series_id"]].append(image)
    listed = [_series_json(series, by_series[series.pk]) for series in series_list]
    return {
        "study": _study_json(study),
        # A series of reports only (SR, PDF in DICOM) has nothing to scroll through.
        "series": [series for series in listed if series["images"]],
        "comparisons": [_study_json(other) for other in comparisons.exclude(pk=study.pk)],
    }


def _study_json(study: Study) -> dict:
    return {
        "id": str(study.id),
        "title": study.title,
        "date": study.study_date.isoformat() if study.study_date else None,
        "modalities": study.modalities,
        "patient": browse.person_name(study.patient_name),
        "images_url": reverse("viewer:study_images", args=[study.id]),
        "files_url": reverse("viewer:study_files", args=[study.id]),
        "files_per_batch": files_per_batch(),
        "viewer_url": reverse("viewer:study", args=[study.id]),
    }


def _series_json(series: Series, images: list[dict]) -> dict:
    displayable = [image for image in images if image["has_pixels"]]
    return {
        "id": str(series.id),
        "number": series.number,
        "modality": series.modality,
        "description": series.description or f"Series {series.number or ''}".strip(),
        "thumbnail": reverse("vault:series_thumbnail", args=[series.id]),
        "frames": sum(image["frames"] for image in displayable),
        "orientation": next(
            (image["orientation"] for image in displayable if image.get("orientation")), None
        ),
        "images": displayable,
        "non_image_count": len(images) - len(displayable),
    }


def first_image_url(study: Study) -> str | None:
    """The URL of the image the viewer shows first (the first image of the first series with
    pixels, in the order of `study_images`), so that the page can have the browser fetch it
    before the viewer's scripts have even loaded."""
    rows = (
        Instance.objects.filter(series__study=study)
        .order_by(
            "series__number",
            "series__created_at",
            "series_id",
            "slice_position",
            "instance_number",
            "created_at",
        )
        .values("id", "rows", "columns", "display")
    )
    for row in rows.iterator(chunk_size=20):
        if _has_pixels(row):
            return reverse("viewer:instance", args=[row["id"]])
    return None


def _has_pixels(row: dict) -> bool:
    # An SR or a PDF-in-DICOM has no pixels: it can't go in a stack.
    display = row["display"] or {}
    return bool(display.get("has_pixels", True) and row["rows"] and row["columns"])


def _nginx_serves_links() -> bool:
    # Secure links are for files on this machine; on S3 the store's presigned URLs serve, as in
    # instance_response and files_response, which look at the storage first too.
    return securelink.enabled() and not blobs.on_object_storage()


def _url_for_each(name: str):
    """A function giving the URL named `name` for an instance id: reverse() once, then text
    replacement. reverse() per image took over half the time of a 300-image list."""
    placeholder = str(uuid.UUID(int=0))
    template = reverse(name, args=[placeholder])
    return lambda pk: template.replace(placeholder, str(pk))


def _instance_json(row: dict, url: str, tags_url: str) -> dict:
    display = row["display"] or {}
    has_pixels = _has_pixels(row)
    return {
        "id": str(row["id"]),
        "url": url,
        "tags_url": tags_url,
        "number": row["instance_number"],
        "frames": row["number_of_frames"] or 1,
        "rows": row["rows"],
        "columns": row["columns"],
        "position": row["slice_position"],
        "orientation": display.get("image_orientation"),
        "pixel_spacing": display.get("pixel_spacing"),
        "window": _window(display),
        "photometric": display.get("photometric"),
        "has_pixels": bool(has_pixels),
    }


def _window(display: dict) -> list[float] | None:
    """The file's own default window as [center, width] (the first, if it lists several)."""
    center, width = display.get("window_center"), display.get("window_width")
    center = center[0] if isinstance(center, list) and center else center
    width = width[0] if isinstance(width, list) and width else width
    if isinstance(center, int | float) and isinstance(width, int | float) and width > 0:
        return [center, width]
    return None


def files_per_batch() -> int:
    """How many files the viewer asks for per batch request (`files_response`). Behind nginx
    with secure links it needs no batch request: the study's list brings the links
    (`study_images`); it still fetches them this many at a time."""
    if blobs.on_object_storage() or securelink.enabled():
        return LINKS_PER_BATCH
    return FILES_PER_STREAMED_BATCH


def storage_origin() -> str | None:
    """The object store's origin, which the page must be allowed to fetch from (CSP
    connect-src) when images are redirected there; None when Django serves them itself."""
    if not blobs.on_object_storage():
        return None
    parts = urlsplit(default_storage.url("probe"))
    return f"{parts.scheme}://{parts.netloc}"


def download_url(request, study: Study) -> str | None:
    """Where this caller downloads the study as a ZIP, or None when they may not: the owner
    always; a doctor when one of their live shares holding the study allows downloads."""
    if access.may_download(request, study):
        return reverse("vault:download_study", args=[study.id])
    return None


def wasm_base_path() -> str:
    # The codecs are fetched by name from inside the bundle and its worker, so this is the
    # unhashed folder (collectstatic keeps the unhashed copies next to the hashed ones).
    return f"{settings.STATIC_URL}vendor/cornerstone3d/"
