#!/bin/sh
# Generates the device simulator's test clips with GStreamer 1.22 (Debian 12): 12 s of a moving test
# pattern at 320x240, 30 frames a second, each encoded with ONE keyframe, at its first frame, and none
# after (the simulator makes its own keyframe interval by looping the clip's start).
#   apt-get install -y gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
#     gstreamer1.0-plugins-ugly gstreamer1.0-libav
# Run: sh src/device/clips/make-clips.sh (it writes beside itself)
set -eu
cd "$(dirname "$0")"
FRAMES=360
SOURCE="videotestsrc num-buffers=$FRAMES pattern=smpte horizontal-speed=4 ! video/x-raw,width=320,height=240,framerate=30/1,format=I420"

# VP8 in IVF: keyframes only when forced (there is nothing to force them), real-time deadline, 250 kbit/s.
gst-launch-1.0 -q $SOURCE \
  ! vp8enc keyframe-mode=disabled keyframe-max-dist=2147483647 deadline=1 end-usage=cbr target-bitrate=250000 \
  ! avmux_ivf ! filesink location=vp8.ivf

# H.264 constrained baseline (no B-frames, CAVLC, one slice per frame), Annex B byte stream with an access unit delimiter
# before every frame (how the simulator finds frame boundaries), SPS and PPS once before the IDR.
gst-launch-1.0 -q $SOURCE \
  ! x264enc bitrate=250 speed-preset=veryfast tune=zerolatency bframes=0 cabac=false aud=true byte-stream=true \
    threads=1 key-int-max=100000 option-string="scenecut=0" \
  ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au \
  ! filesink location=h264.h264
