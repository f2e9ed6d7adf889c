"""Merging a campaign: each recipient with the version of the letter in its language."""

from __future__ import annotations

from dispatch.inputs import Campaign
from dispatch.merge.letter import Merged, MergeContext, Merger
from dispatch.models import Recipient


class VersionMerger:
    """Merges each recipient with the version of the letter in its language (one Merger per version)."""

    def __init__(self, campaign: Campaign) -> None:
        ws = campaign.workspace
        self.campaign = campaign
        self.mergers: dict[str, Merger] = {}
        for version in campaign.versions.all():
            context = MergeContext(letter=version, sender=ws.settings.section("sender"),
                                   page_size=ws.settings.page_size, default_language=ws.settings.language,
                                   columns=campaign.recipients.columns)
            self.mergers[version.language] = Merger(ws.templates, context,
                                                    letter_file=f"letters/{version.path.name}")

    def for_recipient(self, recipient: Recipient) -> Merger:
        return self.mergers[self.campaign.version_for(recipient).language]

    def html(self, recipient: Recipient) -> str:
        return self.for_recipient(recipient).html(recipient)

    def merged(self, recipient: Recipient) -> Merged:
        return self.for_recipient(recipient).merged(recipient)

    def variables(self, recipient: Recipient) -> dict:
        return self.for_recipient(recipient).variables(recipient)

    def used_fields(self) -> tuple[str, ...]:
        """The CSV columns any version of the letter or its layout refers to, in the order of the CSV."""
        used = {name for merger in self.mergers.values() for name in merger.used_fields()}
        return tuple(c for c in self.campaign.recipients.columns if c in used)
