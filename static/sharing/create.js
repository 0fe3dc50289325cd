// The "share with a doctor" form: the custom date shows only when chosen, and one button ticks
// the earlier studies of the same kind and body part as the ones already ticked (the "priors"
// a radiologist compares against). Without JS the form still works: every box can be ticked by
// hand and the date field is simply always visible.
const boxes = Array.from(document.querySelectorAll('#share-studies input[type=checkbox]'));
const button = document.getElementById('tick-priors');
const result = document.getElementById('tick-priors-result');

const words = (value) => (value || '').toUpperCase().split(/\s+/).filter(Boolean);
// The page lists a study's kinds of scan only: reports and notes are no kind of scan.
const modalities = (box) => words(box.dataset.modalities);
const overlaps = (a, b) => a.some((item) => b.includes(item));

function isPriorOf(candidate, chosen) {
  if (!overlaps(modalities(candidate), modalities(chosen))) return false;
  const parts = words(chosen.dataset.bodyParts);
  // A chosen study with no body part recorded matches on the kind of scan alone.
  if (parts.length && !overlaps(words(candidate.dataset.bodyParts), parts)) return false;
  // Earlier or undated: a prior comes before the study the doctor is asked about.
  return !candidate.dataset.date || !chosen.dataset.date || candidate.dataset.date <= chosen.dataset.date;
}

if (button && boxes.length > 1) {
  button.hidden = false;
  button.addEventListener('click', () => {
    const chosen = boxes.filter((box) => box.checked);
    if (!chosen.length) {
      result.textContent = 'First tick the study your doctor should look at.';
      return;
    }
    let added = 0;
    for (const box of boxes) {
      if (!box.checked && chosen.some((one) => isPriorOf(box, one))) {
        box.checked = true;
        added += 1;
      }
    }
    result.textContent = added
      ? `Ticked ${added} more stud${added === 1 ? 'y' : 'ies'}.`
      : 'There are no other studies of the same kind and body part.';
  });
}

const dateField = document.getElementById('expiry-date-field');
const expiry = Array.from(document.querySelectorAll('input[name=expiry]'));
function showDate() {
  const custom = expiry.find((radio) => radio.checked && radio.value === 'custom');
  if (dateField) dateField.hidden = !custom;
}
expiry.forEach((radio) => radio.addEventListener('change', showDate));
showDate();
