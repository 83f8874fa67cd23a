"""Line adapters: SIP/RTP, V.253 voice modem, 3GPP 27.007 GSM modem, simulated. See base.py."""
