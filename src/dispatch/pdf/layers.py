"""The names layered rendering had when it was one module, for code not moved yet: use master.py,
overlay.py, sheets.py, markers.py and metadata.py instead."""

from dispatch.pdf.markers import MARKER
from dispatch.pdf.master import (MAX_SLOTS, PT_PER_PX, SLOT_BLEED, STYLE_KEYS, TOLERANCE, Element, FellBack, Master,
                                 MasterJob, Slot, master_html, supports)
from dispatch.pdf.metadata import head_metadata
from dispatch.pdf.overlay import LayeredLetter, OverlayJob, WarmUp
from dispatch.pdf.sheets import SHEET_HEIGHT, overlay_css, overlay_html, plan_instances

Letter = LayeredLetter  # the old name (models.Letter is a letter of letters/)

__all__ = ["MARKER", "MAX_SLOTS", "PT_PER_PX", "SHEET_HEIGHT", "SLOT_BLEED", "STYLE_KEYS", "TOLERANCE", "Element",
           "FellBack", "LayeredLetter", "Letter", "Master", "MasterJob", "OverlayJob", "Slot", "WarmUp", "head_metadata",
           "master_html", "overlay_css", "overlay_html", "plan_instances", "supports"]
