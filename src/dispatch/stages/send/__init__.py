"""Sending: the plan (who, which letters, the messages) and its execution with a journal."""

from dispatch.stages.send.execute import Choice, Item, SendSummary, choose, execute, settle_interrupted
from dispatch.stages.send.plan import PLACEHOLDER_SENDER, SendPlan, build, plan, write_outbox

__all__ = ["PLACEHOLDER_SENDER", "Choice", "Item", "SendPlan", "SendSummary", "build", "choose", "execute", "plan",
           "settle_interrupted", "write_outbox"]
# dispatch.stages.send.mailbox (Sent copies, drafts over IMAP) is imported by the runs that use the mailbox.
