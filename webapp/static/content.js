/* MutualPlan: click-to-load videos (webapp/templates/content/_blocks.html).
   Nothing is requested from a video host until the buyer clicks; without this file the
   placeholder is a plain link to the video's own page. The click is counted first-party. */
(function () {
  "use strict";
  document.querySelectorAll("[data-video]").forEach(function (box) {
    var start = box.querySelector("a.video-start");
    if (!start) { return; }
    start.addEventListener("click", function (event) {
      event.preventDefault();
      var frame = document.createElement("iframe");
      var src = box.getAttribute("data-video");
      frame.src = src + (src.indexOf("?") < 0 ? "?" : "&") + "autoplay=1";
      frame.title = start.querySelector(".t").textContent;
      frame.allow = "autoplay; fullscreen; picture-in-picture";
      frame.allowFullscreen = true;
      frame.referrerPolicy = "strict-origin";
      frame.loading = "eager";
      box.replaceChildren(frame);
      box.classList.add("playing");
      if (navigator.sendBeacon) {
        var data = new FormData();
        data.append("csrf", box.getAttribute("data-csrf"));
        navigator.sendBeacon(box.getAttribute("data-played"), data);
      }
    });
  });
})();
