"""ReadGate: reading resumes only when every reason that paused it has let go."""

from twisted.internet.testing import StringTransport

from anylog_tw.net.backpressure import ReadGate


def test_reading_resumes_when_the_last_hold_goes():
    t = StringTransport()
    gate = ReadGate(t)
    gate.hold("disk")
    assert t.producerState == "paused"
    gate.hold("replies")
    gate.release("disk")
    assert t.producerState == "paused"  # the replies still hold it
    gate.release("disk")  # releasing twice changes nothing
    assert t.producerState == "paused"
    gate.release("replies")
    assert t.producerState == "producing" and not gate.holds
