// Opens each user's delete dialog as a modal <dialog> (focus stays inside
// it; Escape and Cancel close it) and enables its submit button only once
// the user's email is typed exactly. The server checks again.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("button[data-dialog]").forEach(function (b) {
    b.addEventListener("click", function () {
      var d = document.getElementById(b.dataset.dialog);
      if (!d) return;
      d.showModal();
      var input = d.querySelector("input[data-confirm]");
      if (input) input.focus();
      d.addEventListener("close", function () { b.focus(); }, { once: true });
    });
  });
  document.querySelectorAll("dialog button[data-close]").forEach(function (b) {
    b.addEventListener("click", function () { b.closest("dialog").close(); });
  });
  document.querySelectorAll("dialog input[data-confirm]").forEach(function (input) {
    var submit = input.form.querySelector("[data-confirm-submit]");
    var check = function () {
      submit.disabled = input.value.trim().toLowerCase() !== input.dataset.confirm.toLowerCase();
    };
    input.addEventListener("input", check);
    check();
  });
});
