"""DIRAC's CleanReqDBAgent, with the grace before it puts back ("kicks") requests left ``Assigned`` given in minutes.

A RequestExecutingAgent marks each request it takes ``Assigned`` and puts it back when it stops cleanly
(``finalize`` -> ``putAllRequests``). One killed mid-execution (SIGKILL, a crashed host, OOM) leaves its requests
``Assigned``: no RequestExecutingAgent takes them again (``RequestDB.getRequest`` selects ``Waiting`` ones), and
nothing resets them but DIRAC's CleanReqDBAgent, which kicks (re-puts as ``Waiting``) requests ``Assigned`` for
longer than ``KickGraceHours``, a whole number of hours (default 1; DIRAC 9.1.22 reads it as an int). For KM3DIRAC
that means job outputs whose registration was deferred (``KM3RegisterOutputs``) stay out of Rucio, and their jobs
``Completed``, for an hour after such a kill.

This agent is that one, with ``KickGraceMinutes`` (when set, > 0) in place of ``KickGraceHours``. It must be longer
than the longest a live RequestExecutingAgent holds a request (its time-out of the request: ``OperationTimeout`` or
the handler's ``TimeOut``, plus ``TimeOutPerFile`` x files), or a request still executing is put back and run a
second time (KM3RegisterOutputs is idempotent; other handlers may not be). Every other option is DIRAC's
(ConfigTemplate.cfg: /Systems/RequestManagement/Agents/KM3CleanReqDBAgent).

Deploy in place of DIRAC's CleanReqDBAgent: ``dirac-agent RequestManagement/KM3CleanReqDBAgent``.
"""

from __future__ import annotations

from DIRAC import S_ERROR
from DIRAC.RequestManagementSystem.Agent.CleanReqDBAgent import CleanReqDBAgent


class KM3CleanReqDBAgent(CleanReqDBAgent):
    def initialize(self):
        result = super().initialize()
        if not result["OK"]:
            return result
        minutes = self.am_getOption("KickGraceMinutes", 0.0)
        if minutes < 0:
            return S_ERROR(f"KickGraceMinutes = {minutes}: give the minutes a request may stay Assigned (> 0), "
                           "or 0 to use KickGraceHours")
        if minutes:
            # CleanReqDBAgent.execute compares each Assigned request's LastUpdate with now - KICK_GRACE_HOURS hours
            self.KICK_GRACE_HOURS = minutes / 60
            self.log.info(f"Kick assigned requests period = {minutes} minutes (KickGraceMinutes)")
        return result
