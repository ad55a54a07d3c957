// One inspection driven from Kotlin on the JVM through the generated uniffi bindings and JNA,
// against a real server that uniffi/tests/server.rs starts. As an Android app would: log in,
// sync, answer the items, take a photo, sign, submit, and see the supervisor's return.
//
// Run as: java -Djna.library.path=<dir of libsuiji_uniffi> -cp app.jar:jna.jar InspectionKt
//   <server url> <username> <password> <inspector id> <record id> <store dir> <photo file>
// Between steps it prints `STEP <name>` and waits for a line `go` on stdin, while the test
// does what the partner and the supervisor do on their side.

import java.io.File
import uniffi.suiji_uniffi.*

fun step(name: String) {
    println("STEP $name")
    System.out.flush()
    val line = readLine() ?: error("stdin closed before step $name")
    check(line == "go") { "unexpected `$line` at step $name" }
}

fun main(args: Array<String>) {
    val (url, username, password, inspectorId, recordId) = args
    val storeDir = args[5]
    val photoFile = File(args[6])

    // The store keeps the session: log in once, then sync without handling tokens.
    val store = MobileStore.open(storeDir, inspectorId)
    store.login(url, username, password)
    check(store.loggedInServer() == url)
    fun sync(): SyncReport {
        val report = store.sync()
        check(report.complete) { "sync incomplete: $report" }
        return report
    }

    val first = sync()
    check(recordId in first.newRecords) { "the assigned record arrives: $first" }
    val task = store.listTasks().single { it.recordId == recordId }
    check(task.status == ReviewState.OPEN) { task.toString() }

    // Answer every item on the phone, offline.
    val record = store.record(recordId)
    val items = record.items()
    check(items.isNotEmpty())
    for (item in items) {
        record.setChecked(item.code, true)
        check(item.foreseenMethods.isNotEmpty()) { item.toString() }
        record.setMethods(item.code, item.foreseenMethods)
        record.setFinding(item.code, "现场核查，未发现问题")
    }
    record.setResultCategories(listOf(ResultCategory.NO_PROBLEM))
    record.setFollowUp(FollowUpMeasure.NO_FOLLOW_UP, null, null)
    // From the camera's file: the photo's bytes never cross the FFI.
    val photo = record.importPhotoFile(items[0].code, photoFile.path, "门头照片")
    check(record.photos().map { it.sha256 } == listOf(photo.sha256))
    val waiting = store.pending()
    check(waiting.records == 1u && waiting.blobs >= 2u) { "queued for sync: $waiting" }

    // Errors cross as exceptions of their kind.
    try {
        store.record("task-0/no-such-record")
        error("an unknown record must not open")
    } catch (e: SuijiException.NotFound) {
    }
    try {
        record.setFinding("Z99", "x")
        error("an unknown item must be refused")
    } catch (e: SuijiException.NotFound) {
    }

    // Sign on this phone, send the answers, the photo and the signature.
    record.sign(null)
    val sent = sync()
    check(recordId in sent.sent) { "the answers went up: $sent" }
    check(photo.thumbnailSha256 in sent.blobsUploaded) { "the thumbnail went up: $sent" }
    check(store.pending().blobs == 0u) { "nothing left to upload: ${store.pending()}" }
    step("signed") // the partner signs on their own phone

    sync()
    check(record.signedBy().size == 2) { "both signatures: ${record.signedBy()}" }
    val submitted = record.submit()
    check(submitted.submitted) { "submitted: $submitted" }
    sync()
    step("submitted") // the supervisor returns it

    sync()
    val review = record.review()
    check(review.state == ReviewState.RETURNED) { review.toString() }
    println("RETURNED ${review.lastComment}")
    check(store.listTasks().single { it.recordId == recordId }.status == ReviewState.RETURNED)

    // Logging out revokes the session on the server; a sync then needs a login again.
    check(store.logout()) { "the server revoked the session" }
    try {
        store.sync()
        error("a sync after logging out must be refused")
    } catch (e: SuijiException.Unauthorized) {
    }
    println("kotlin inspection: ok")
}
